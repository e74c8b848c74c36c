"""The paho client of one connection attempt, as :class:`agent.sync.mqtt.MqttLink` uses it.

:func:`make_client` builds it (paho-mqtt 2.x, VERSION2 callbacks: MQTT 3.1.1 or 5, client id = device
id, persistent session, user and password, TLS, a retained last will, no reconnect of its own),
:func:`send_connect` sends its CONNECT (MQTT 5: the session expiry), :func:`flush` writes what it
queued (a round's packets coalesced into one ``send``) and :func:`close` closes what paho left open.
The link runs the network loop. :func:`describe_connect_error` and :func:`describe_connack` turn
failures into messages a technician can act on (``edge-agent doctor`` uses them too); the password
is never logged. :class:`ConnectionState`, the link's base, holds what the link knows of its
connection and the paho callbacks that change it (CONNACK: the birth and the subscriptions).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.sync.config import MqttConfig
from agent.sync.topics import Topics

log = logging.getLogger("agent.sync.mqtt")  # the link's log, as before this module was split off


class _PahoStopNoise(logging.Filter):
    """paho's network thread runs one more loop after a disconnect has closed the socket and logs
    "Client is not connected" as an ERROR: on a clean stop (or a reconnect, which our own
    on_disconnect reports with its reason) that is no error. Demoted to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_PAHO_LOG = logging.getLogger("agent.sync.paho")
_PAHO_LOG.addFilter(_PahoStopNoise())


def describe_connect_error(exc: BaseException, host: str, port: int) -> str:
    """A message a technician can act on, for a failed TCP/TLS connect."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or str(exc)
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            return (
                f"TLS: the broker's certificate does not name {host} ({why}); connect by the name in the certificate, "
                "or set mqtt.tls.verify_hostname = false for a test bench only"
            )
        return f"TLS: the broker's certificate is not trusted ({why}); check mqtt.tls.ca_file (the CA that signed the broker's certificate)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host}:{port} failed ({exc.reason or exc}); check mqtt.tls (client certificate and key, TLS port)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {host}:{port} refused: is the broker running and is mqtt.port right?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve broker host {host!r} ({exc.strerror}); check mqtt.host and DNS"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer from {host}:{port} within the connect timeout (network down or firewall?)"
    return f"cannot connect to {host}:{port}: {exc}"


def describe_connack(reason: Any) -> str:
    text = str(reason)
    hint = ""
    low = text.lower()
    if "password" in low or "not authori" in low or "bad user" in low:
        hint = "; check mqtt.username and the password (password_file / password_env) and the broker's ACL"
    elif "identifier" in low:
        hint = "; the broker refuses this client id (device.id)"
    return f"broker refused the connection: {text}{hint}"


def make_client(
    cfg: MqttConfig,
    client_id: str,
    *,
    password: str | None,
    key_password: str | None,
    will_topic: str,
    will: str,
) -> paho.Client:
    """A fresh client for one attempt, every option set but the callbacks (the link sets those)."""
    v5 = cfg.protocol == "5"
    kw: dict[str, Any] = {
        "callback_api_version": CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
        "reconnect_on_failure": False,
    }
    if not v5:
        kw["clean_session"] = not cfg.persistent_session
    c = paho.Client(**kw)
    c.suppress_exceptions = True  # a bug in a callback is logged, it does not end the connection
    c.enable_logger(_PAHO_LOG)
    c.connect_timeout = cfg.connect_timeout_s
    c.max_inflight_messages_set(cfg.max_inflight + 2)  # + birth and offline status
    if cfg.username is not None:
        c.username_pw_set(cfg.username, password)
    t = cfg.tls
    if t.enabled:
        c.tls_set(
            ca_certs=str(t.ca_file) if t.ca_file else None,
            certfile=str(t.cert_file) if t.cert_file else None,
            keyfile=str(t.key_file) if t.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
            keyfile_password=key_password,
        )
        c.tls_insecure_set(not t.verify_hostname)
    c.will_set(will_topic, will, qos=1, retain=True)
    c.on_socket_register_write = _defer_write  # the link writes (see flush)
    return c


def send_connect(client: paho.Client, cfg: MqttConfig) -> None:
    """Open the socket and send CONNECT (MQTT 5: the session expiry, and clean start unless the session
    is persistent). Raises what paho raises (OSError, ssl.SSLError, ValueError)."""
    host, port = cfg.host, cfg.effective_port
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s if cfg.persistent_session else 0
        client.connect(
            host,
            port,
            cfg.keepalive_s,
            clean_start=not cfg.persistent_session,
            properties=props,
        )
    else:
        client.connect(host, port, cfg.keepalive_s)


def close(client: paho.Client) -> None:
    """Close a client whose socket paho did not close (a failed or abandoned connection)."""
    if client.socket() is None:
        return
    try:
        client.disconnect()
        flush(client)
    except Exception:  # noqa: BLE001
        pass
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


# -- writing: a network round's packets in one send ------------------------------------------------

_PUBLISH, _DISCONNECT = 0x30, 0xE0


def _defer_write(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's "register write" callback: with one set, paho queues each packet instead of writing
    it at once, and the link writes what a network round queued in one go (:func:`coalesce`)."""


def flush(client: paho.Client) -> None:
    """Write what the client queued: its packets merged (:func:`coalesce`), then paho's write."""
    coalesce(client._out_packet)  # paho's queue of packets to write
    client.loop_write()


def coalesce(queue: deque) -> None:
    """Merge the packets paho queued (not yet started) into one, so a round's PUBLISHes go out in one
    ``send`` instead of one each (a third of the thread's time went to those system calls). paho does
    nothing after writing a packet but for a QoS 0 PUBLISH (its on_publish) and a DISCONNECT (closes
    the socket): those are left as they are. A queue of another shape (another paho) is left alone."""
    if len(queue) < 2:
        return
    try:
        out: list[Any] = []
        run: list[Any] = []
        for pkt in queue:
            cmd = pkt["command"] & 0xF0
            if pkt["pos"] == 0 and not (cmd == _PUBLISH and pkt["qos"] == 0) and cmd != _DISCONNECT:
                run.append(pkt)
                continue
            if run:
                out.append(_merged(run))
                run = []
            out.append(pkt)
        if run:
            out.append(_merged(run))
    except (KeyError, TypeError):
        return
    if len(out) < len(queue):
        queue.clear()
        queue.extend(out)


def _merged(run: list[Any]) -> Any:
    if len(run) == 1:
        return run[0]
    data = bytearray().join(p["packet"] for p in run)
    return {**run[0], "packet": data, "to_process": len(data), "pos": 0}


# -- the connection's state, and the paho callbacks that change it ---------------------------------


class ConnectionState:
    """What :class:`agent.sync.mqtt.MqttLink` knows of its connection, and what a CONNACK and a
    disconnect do to it (the link's thread, from within paho's read): on every CONNACK the retained
    birth goes out and the commands are subscribed to; the counters and ``last_error`` are what the
    health message and the hub show. ``connected`` is set while a connection is up."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        topics: Topics,
        *,
        birth: Callable[[int], dict],
        death: Callable[[int], dict],
        on_message: Callable[[str, bytes, Any], None],
        on_state: Callable[[bool], None],
        subscriptions: list[str] | None,
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.topics = topics
        self._birth = birth
        self._death = death
        self._on_message = on_message
        self._on_state = on_state
        self.subscriptions = subscriptions or []
        self.connected = threading.Event()
        self.session: int | None = None
        self.attempts = 0
        self.connects = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_connect: float | None = None
        self._stop = threading.Event()
        self._ended = False  # the current connection is over (set in paho's callbacks, our thread)
        self._connack_at: float | None = None

    def _set_connected(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        try:
            self._on_state(up)
        except Exception:  # noqa: BLE001
            log.exception("mqtt state callback failed")

    def _error(self, msg: str) -> None:
        if msg != self.last_error:
            log.warning("mqtt: %s", msg)
        else:
            log.info("mqtt: %s (again)", msg)
        self.last_error = msg

    def _cb_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._error(describe_connack(reason))
            self._ended = True
            return
        self._connack_at = time.monotonic()
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self.last_connect = time.time()
        self.last_error = None
        session = self.session or 0
        client.publish(self.topics.status, json.dumps(self._birth(session)), qos=1, retain=True)
        subs = [(t, 1) for t in self.subscriptions]
        if subs:
            client.subscribe(subs)
        log.info(
            "mqtt: connected to %s:%d (session %d, session present: %s)",
            self.cfg.host,
            self.cfg.effective_port,
            session,
            getattr(flags, "session_present", "?"),
        )
        self._set_connected(True)

    def _cb_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if not self._stop.is_set() and self._connack_at is not None:
            self._error(f"connection lost: {reason}")
        self._set_connected(False)
        self._ended = True

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            self._on_message(msg.topic, bytes(msg.payload), getattr(msg, "properties", None))  # bytes: as is
        except Exception:  # noqa: BLE001 - one bad message must not stop the connection
            log.exception("handling a message on %s failed", msg.topic)
