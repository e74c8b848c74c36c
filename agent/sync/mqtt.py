"""The connection to the broker (paho-mqtt 2.x): connect, birth and last will, backoff, clean stop.

:class:`MqttLink` owns one thread that, for every connection attempt, takes the next session id,
builds a fresh paho client (MQTT 3.1.1 or 5, TCP or TLS, user and password, client id = device id,
persistent session, a retained last will ``.../status`` = offline carrying that session id),
connects, and runs paho's network loop until the connection ends; then it waits (exponential
backoff with jitter, capped) and tries again, forever. On every CONNACK it publishes the retained
birth ``.../status`` = online and subscribes to the accepted commands.

A fresh client per attempt means nothing is kept in paho's memory across connections: the outbox
(SQLite) is the one source of truth, and the publisher re-sends what was in flight. Errors are
classified into messages people can act on (wrong password, untrusted certificate, refused, ...);
the password is never logged.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.backoff import EQUAL, Backoff
from agent.sync.config import MqttConfig
from agent.sync.topics import Topics

log = logging.getLogger(__name__)


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

AckFn = Callable[[int, int, bool, Any], None]  # (generation, mid, ok, reason code)
MessageFn = Callable[[str, bytes, Any], None]  # (topic, payload, properties)


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


class MqttLink:
    """One device's connection to the broker.

    Args:
        cfg: the ``[mqtt]`` section.
        client_id: the device id.
        topics: the device's topics.
        next_session: returns the next session id (persisted by the caller); called once per attempt.
        birth: returns the birth payload for a session (published retained on every CONNACK).
        death: returns the offline payload for a session (the last will, and published on a clean stop).
        on_ack: called on every PUBACK (in paho's thread; keep it cheap). Replaceable after construction
            (``link.on_ack = ...``) by whoever is created with the link.
        on_message: called for every message received (in paho's thread; must not block).
        on_state: called with True on connect and False on disconnect.
        subscriptions: topic filters subscribed on every connect.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        topics: Topics,
        *,
        next_session: Callable[[], int],
        birth: Callable[[int], dict],
        death: Callable[[int], dict],
        on_ack: AckFn,
        on_message: MessageFn,
        on_state: Callable[[bool], None] = lambda up: None,
        subscriptions: list[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.topics = topics
        self._next_session = next_session
        self._birth = birth
        self._death = death
        self.on_ack = on_ack
        self._on_message = on_message
        self._on_state = on_state
        self.subscriptions = subscriptions or []
        self.connected = threading.Event()
        self.session: int | None = None
        self.generation = 0
        self.attempts = 0
        self.connects = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_connect: float | None = None
        self.next_attempt_in: float | None = None
        self._client: paho.Client | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._password = cfg.resolved_password()  # resolved once: a missing file is a config error at start
        self._key_password = cfg.tls.resolved_key_password() if cfg.tls.enabled else None
        self._stop_deadline = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish offline status (if connected), disconnect cleanly (no last will), end the thread."""
        self._stop_deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._ended.set()
        if self._thread:
            self._thread.join(timeout_s + 2)
            self._thread = None

    # -- publishing (any thread) -----------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> tuple[int, int] | None:
        """Hand a message to the current connection. Returns (generation, mid) or None if not connected."""
        gen, mids = self.publish_many([(topic, payload, qos, retain)], properties)
        return (gen, mids[0]) if mids else None

    def publish_many(
        self, msgs: list[tuple[str, bytes, int, bool]], properties: Properties | None = None
    ) -> tuple[int, list[int]]:
        """Hand several ``(topic, payload, qos, retain)`` to the current connection (a backlog drains in
        bursts of hundreds: one look at the connection for all). Returns (generation, mids): the mids of
        those taken, in order; fewer than given if the connection went away on the way."""
        with self._lock:
            client, gen = self._client, self.generation
        mids: list[int] = []
        if client is None or not self.connected.is_set():
            return gen, mids
        publish, ok = client.publish, paho.MQTT_ERR_SUCCESS
        for topic, payload, qos, retain in msgs:
            try:
                info = publish(topic, payload, qos=qos, retain=retain, properties=properties)
            except (ValueError, RuntimeError) as exc:
                log.error("publish to %s refused by the client: %s", topic, exc)
                break
            if info.rc != ok:
                break
            mids.append(info.mid)
        return gen, mids

    def republish_birth(self) -> None:
        with self._lock:
            client, session = self._client, self.session
        if client is not None and session is not None and self.connected.is_set():
            client.publish(self.topics.status, json.dumps(self._birth(session)), qos=1, retain=True)

    # -- the thread ------------------------------------------------------------------------------
    def _make_client(self, session: int) -> paho.Client:
        v5 = self.cfg.protocol == "5"
        kw: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": self.client_id,
            "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
            "reconnect_on_failure": False,
        }
        if not v5:
            kw["clean_session"] = not self.cfg.persistent_session
        c = paho.Client(**kw)
        c.suppress_exceptions = True  # a bug in a callback is logged, it does not kill the network thread
        c.enable_logger(_PAHO_LOG)
        c.connect_timeout = self.cfg.connect_timeout_s
        c.max_inflight_messages_set(self.cfg.max_inflight + 2)  # + birth and offline status
        if self.cfg.username is not None:
            c.username_pw_set(self.cfg.username, self._password)
        t = self.cfg.tls
        if t.enabled:
            c.tls_set(
                ca_certs=str(t.ca_file) if t.ca_file else None,
                certfile=str(t.cert_file) if t.cert_file else None,
                keyfile=str(t.key_file) if t.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
                keyfile_password=self._key_password,
            )
            c.tls_insecure_set(not t.verify_hostname)
        c.will_set(self.topics.status, json.dumps(self._death(session)), qos=1, retain=True)
        c.on_connect = self._cb_connect
        c.on_disconnect = self._cb_disconnect
        c.on_publish = self._cb_publish
        c.on_message = self._cb_message
        return c

    def _run(self) -> None:
        # reconnect_initial_s doubling to reconnect_max_s, "equal jitter" (between half and all of it)
        backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, jitter=EQUAL)
        while not self._stop.is_set():
            up_at = self._attempt()
            if self._stop.is_set():
                break
            if up_at is not None:
                backoff.reset()  # a connection that reached CONNACK resets the backoff
            delay = backoff.next_delay()
            self.next_attempt_in = delay
            log.info("mqtt: reconnecting in %.1f s", delay)
            self._stop.wait(delay)
        self.next_attempt_in = None

    def _attempt(self) -> float | None:
        """One connection: returns the time CONNACK succeeded, or None if it never did."""
        self.attempts += 1
        session = self._next_session()
        client = self._make_client(session)
        self._ended.clear()
        self._connack_at: float | None = None
        with self._lock:
            self.generation += 1
            self._client = client
            self.session = session
        host, port = self.cfg.host, self.cfg.effective_port
        try:
            props = None
            if self.cfg.protocol == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.cfg.session_expiry_s if self.cfg.persistent_session else 0
                client.connect(
                    host,
                    port,
                    self.cfg.keepalive_s,
                    clean_start=not self.cfg.persistent_session,
                    properties=props,
                )
            else:
                client.connect(host, port, self.cfg.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._error(describe_connect_error(exc, host, port))
            self._drop_client()
            return None
        client.loop_start()
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        while not self._ended.is_set():
            if self._connack_at is None and time.monotonic() > deadline:
                self._error(f"no CONNACK from {host}:{port} within {self.cfg.connect_timeout_s:.0f} s")
                break
            thread = getattr(client, "_thread", None)
            if thread is not None and not thread.is_alive():
                self._error("the MQTT network thread ended unexpectedly; restarting the connection")
                break
            self._ended.wait(0.5 if self._connack_at is None else 5.0)
        if self._stop.is_set() and self.connected.is_set():
            self._clean_disconnect(client, session)
        was_up = self._connack_at
        self._set_connected(False)
        if client.is_connected():
            client.disconnect()
        client.loop_stop()
        self._drop_client()
        return was_up

    def _clean_disconnect(self, client: paho.Client, session: int) -> None:
        try:
            info = client.publish(self.topics.status, json.dumps(self._death(session)), qos=1, retain=True)
            info.wait_for_publish(max(0.1, self._stop_deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            log.warning("mqtt: offline status not acknowledged at stop: %s", exc)
        client.disconnect()

    def _drop_client(self) -> None:
        with self._lock:
            self._client = None

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

    # -- paho callbacks (paho's thread) ----------------------------------------------------------
    def _cb_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._error(describe_connack(reason))
            self._ended.set()
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
        self._ended.set()

    def _cb_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # once per message, in paho's thread: as little as possible (reason codes >= 0x80 are failures)
        self.on_ack(self.generation, mid, getattr(reason, "value", 0) < 0x80, reason)

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            self._on_message(msg.topic, msg.payload, getattr(msg, "properties", None))
        except Exception:  # noqa: BLE001 - one bad message must not stop the connection
            log.exception("handling a message on %s failed", msg.topic)
