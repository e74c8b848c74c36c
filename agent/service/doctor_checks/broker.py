"""The broker: a real MQTT connect with the configured TLS and credentials; publishing the report.

The client is built like the agent's own (``agent.sync.mqtt``): paho 2 with the VERSION2
callbacks, MQTT 3.1.1 or 5, TLS with the configured CA / client certificate / hostname check,
user and password from the config's secret sources. Its client id is ``{device.id}-doctor`` with a
clean session and no last will, so running doctor next to the agent never takes over the agent's
connection (a takeover would publish the agent's last will: "offline").
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from agent.service.doctor_checks.base import Check, Context, Result, ok, skip, warn

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from agent.config import AgentConfig
    from agent.sync.config import TlsConfig


class BrokerError(AgentError):
    """Connecting or publishing to the broker failed (message: why, hint: what to check)."""


def broker_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    tmo = min(ctx.timeout_s, cfg.mqtt.connect_timeout_s)
    return [Check("broker", "broker", lambda: check_broker(cfg, tmo), tmo + 3)]


def _describe(cfg: AgentConfig) -> str:
    m = cfg.mqtt
    auth = f"user {m.username}" if m.username is not None else "no user"
    tls = "TLS" if m.tls.enabled else "no TLS"
    if m.tls.enabled and m.tls.cert_file:
        tls += " + client certificate"
    return f"{m.host}:{m.effective_port} ({tls}, MQTT {m.protocol}, {auth})"


def connect(cfg: AgentConfig, timeout_s: float) -> paho.Client:
    """A connected client (network loop running), or BrokerError saying why not."""
    c = _new_client(cfg, timeout_s)
    if cfg.mqtt.tls.enabled:
        _set_tls(c, cfg.mqtt.tls)
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client, userdata, flags, reason, properties):
        outcome["reason"] = reason
        done.set()

    def on_disconnect(client, userdata, flags, reason, properties):
        outcome.setdefault("lost", str(reason))
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    _send_connect(c, cfg)
    c.loop_start()
    _await_connack(c, cfg, timeout_s, done, outcome)
    return c


def _new_client(cfg: AgentConfig, timeout_s: float) -> paho.Client:
    """The doctor's client: ``{device.id}-doctor``, clean session, no reconnects, the credentials."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    m = cfg.mqtt
    v5 = m.protocol == "5"
    password = m.resolved_password()  # ConfigError (an AgentError) names an unreadable secret
    kw: dict[str, Any] = {
        "callback_api_version": CallbackAPIVersion.VERSION2,
        "client_id": f"{cfg.device.id}-doctor",
        "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
        "reconnect_on_failure": False,
    }
    if not v5:
        kw["clean_session"] = True
    c = paho.Client(**kw)
    c.connect_timeout = timeout_s
    if m.username is not None:
        c.username_pw_set(m.username, password)
    return c


def _set_tls(c: paho.Client, t: TlsConfig) -> None:
    """mqtt.tls on the client: the files must exist and load (BrokerError names the one that does not)."""
    for what, f in (("ca_file", t.ca_file), ("cert_file", t.cert_file), ("key_file", t.key_file)):
        if f is not None and not f.is_file():
            raise BrokerError(
                f"mqtt.tls.{what} {f} does not exist",
                "fix the path (edge-agent provision copies certificates to /etc/edge-agent/certs)",
            )
    try:
        c.tls_set(
            ca_certs=str(t.ca_file) if t.ca_file else None,
            certfile=str(t.cert_file) if t.cert_file else None,
            keyfile=str(t.key_file) if t.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
            keyfile_password=t.resolved_key_password(),
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise BrokerError(
            f"the TLS files in mqtt.tls cannot be loaded: {exc}",
            "check that ca_file is a PEM CA certificate and that key_file matches cert_file",
        ) from None
    c.tls_insecure_set(not t.verify_hostname)


def _send_connect(c: paho.Client, cfg: AgentConfig) -> None:
    """CONNECT (MQTT 5: clean start, no session kept); BrokerError when the socket or TLS fails."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from agent.sync.mqtt import describe_connect_error

    m = cfg.mqtt
    host, port = m.host, m.effective_port
    try:
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
            c.connect(host, port, m.keepalive_s, clean_start=True, properties=props)
        else:
            c.connect(host, port, m.keepalive_s)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BrokerError(describe_connect_error(exc, host, port), _hint(exc)) from None


def _await_connack(
    c: paho.Client, cfg: AgentConfig, timeout_s: float, done: threading.Event, outcome: dict[str, Any]
) -> None:
    """Wait for the CONNACK; on none, or a refusal, close the client and raise BrokerError saying why."""
    from agent.sync.mqtt import describe_connack

    host, port = cfg.mqtt.host, cfg.mqtt.effective_port
    if not done.wait(timeout_s):
        _close(c)
        raise BrokerError(
            f"connected to {host}:{port} but no CONNACK within {timeout_s:g} s",
            "is this port an MQTT listener (TLS on a plain port, or the reverse)? check mqtt.port and mqtt.tls.enabled",
        )
    reason = outcome.get("reason")
    if reason is None or reason.is_failure:
        _close(c)
        if reason is None:
            raise BrokerError(
                f"the broker closed the connection before CONNACK ({outcome.get('lost')})",
                "check mqtt.tls (a TLS listener needs tls.enabled) and the broker's log",
            )
        raise BrokerError(
            describe_connack(reason),
            "fix mqtt.username / mqtt.password_file, or ask the broker's "
            "operator to allow this user (and the topics under mqtt.topic_prefix)",
        )


def _hint(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return "compare mqtt.tls with the broker's listener; `openssl s_client -connect HOST:PORT -CAfile CA` shows the handshake"
    if isinstance(exc, ConnectionRefusedError):
        return "start the broker or fix mqtt.host / mqtt.port (TLS usually 8883, plain 1883)"
    return "check mqtt.host, mqtt.port, the network and any firewall between the unit and the broker"


def _close(c: paho.Client) -> None:
    try:
        c.disconnect()
    finally:
        c.loop_stop()


def check_broker(cfg: AgentConfig, timeout_s: float) -> Result:
    m = cfg.mqtt
    if not m.enabled:
        return skip("mqtt.enabled = false: summaries buffer in the local outbox until it is enabled")
    t0 = time.monotonic()
    c = connect(cfg, timeout_s)
    took = time.monotonic() - t0
    _close(c)
    detail = f"connected to {_describe(cfg)} in {took:.2f} s"
    data = {"host": m.host, "port": m.effective_port, "tls": m.tls.enabled, "protocol": m.protocol}
    if not m.tls.enabled and not _is_loopback(m.host):
        return warn(
            detail + "; unencrypted: the password and data cross the network in clear",
            "use the broker's TLS listener: mqtt.tls.enabled = true (port 8883) with tls.ca_file",
            **data,
        )
    if m.tls.enabled and not m.tls.verify_hostname:
        return warn(
            detail + "; the broker's certificate name is not checked (tls.verify_hostname = false)",
            "set mqtt.tls.verify_hostname = true and connect by the name in the broker's certificate",
            **data,
        )
    return ok(detail, **data)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def publish(cfg: AgentConfig, topic: str, payload: bytes, timeout_s: float) -> str:
    """Publish ``payload`` retained with QoS 1 and wait for the PUBACK. Returns a line; raises BrokerError."""
    import paho.mqtt.client as paho

    if not cfg.mqtt.enabled:
        raise BrokerError(
            "cannot publish the report: mqtt.enabled = false",
            "enable MQTT (edge-agent provision --broker URL)",
        )
    c = connect(cfg, timeout_s)
    acked = threading.Event()
    result: dict[str, Any] = {}

    def on_publish(client, userdata, mid, reason, properties):
        result["reason"] = reason
        acked.set()

    c.on_publish = on_publish
    try:
        info = c.publish(topic, payload, qos=1, retain=True)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise BrokerError(
                f"cannot publish the report to {topic}: {paho.error_string(info.rc)}",
                "check the connection to the broker and retry",
            )
        if not acked.wait(timeout_s):
            raise BrokerError(
                f"no PUBACK for the report on {topic} within {timeout_s:g} s",
                "the broker or the network is slow or dropping messages; retry",
            )
        reason = result.get("reason")
        if reason is not None and getattr(reason, "is_failure", False):
            raise BrokerError(
                f"the broker refused the report on {topic}: {reason}",
                f"the broker's ACL must let {cfg.mqtt.username or 'this client'} publish under "
                f"{cfg.mqtt.topic_prefix}/{cfg.device.site}/{cfg.device.id}/",
            )
    finally:
        _close(c)
    return f"published the report to {topic} (retained, QoS 1, {len(payload)} bytes; PUBACK received)"
