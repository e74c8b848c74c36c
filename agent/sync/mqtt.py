"""The connection to the broker (paho-mqtt 2.x): connect, birth and last will, backoff, clean stop.

:class:`MqttLink` owns one thread that, for every connection attempt, takes the next session id,
builds a fresh paho client (MQTT 3.1.1 or 5, TCP or TLS, user and password, client id = device id,
persistent session, a retained last will ``.../status`` = offline carrying that session id),
connects, and runs paho's network loop itself until the connection ends; then it waits (exponential
backoff with jitter, capped) and tries again, forever. On every CONNACK it publishes the retained
birth ``.../status`` = online and subscribes to the accepted commands.

There is no paho network thread (no ``loop_start``): the link's thread ``select``s on paho's socket
and a wake-up socket, calls ``loop_read`` / ``loop_write`` / ``loop_misc`` and, between network
events, its driver, the publisher (``Publisher.pump``). So reading the outbox, publishing and taking
the PUBACKs happen in one thread, with no hand-off per message between threads (issue #15). Other
threads (command replies, a rebirth) hand their publish to this thread (:meth:`MqttLink.call`).

A fresh client per attempt means nothing is kept in paho's memory across connections: the outbox
(SQLite) is the one source of truth, and the publisher re-sends what was in flight. Errors are
classified into messages people can act on (wrong password, untrusted certificate, refused, ...);
the password is never logged.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

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


class Driver(Protocol):
    """What the link's thread runs between network events (the publisher, agent/sync/publisher.py)."""

    def pump(self) -> float:
        """Do what is due (take stock of acks, hand paho messages, marks); returns the most seconds
        the thread may sleep before calling again (it calls sooner on any network event or wake())."""
        ...

    def on_ack(self, gen: int, mid: int, ok: bool, reason: Any) -> None:
        """A PUBACK (in the link's thread, from within paho's read)."""
        ...

    def ended(self) -> None:
        """The link's thread is ending (stop, or a crash before a restart)."""
        ...


class _Call:
    """A piece of work another thread hands to the link's thread (publish a reply, the birth)."""

    __slots__ = ("fn", "result", "done")

    def __init__(self, fn: Callable[[paho.Client], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.done = threading.Event()


_MISC_S = 1.0  # paho's loop_misc (keepalive ping, ping timeout) at least this often
_PUBLISH, _DISCONNECT = 0x30, 0xE0


def _defer_write(client: paho.Client, userdata: Any, sock: Any) -> None:
    """paho's "register write" callback: with one set, paho queues each packet instead of writing
    it at once, and the link writes what a network round queued in one go (:func:`coalesce`)."""


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


class MqttLink:
    """One device's connection to the broker, and the one thread that does all its network I/O.

    The thread connects, runs paho's network loop itself (``loop_read`` / ``loop_write`` /
    ``loop_misc`` on a ``select`` over paho's socket and a wake-up socket) and, between network
    events, runs its :class:`Driver` (the publisher): so one thread reads the outbox, publishes and
    takes the PUBACKs, and no message is handed from one thread to another. Other threads never call
    paho: :meth:`publish` from another thread queues the call for the link's thread and waits for it.

    Args:
        cfg: the ``[mqtt]`` section.
        client_id: the device id.
        topics: the device's topics.
        next_session: returns the next session id (persisted by the caller); called once per attempt.
        birth: returns the birth payload for a session (published retained on every CONNACK).
        death: returns the offline payload for a session (the last will, and published on a clean stop).
        on_ack: called on every PUBACK (in the link's thread) unless a driver is attached; the driver's
            ``on_ack`` replaces it (``link.driver = ...``, done by the publisher's ``start``).
        on_message: called for every message received (in the link's thread; must not block).
        on_state: called with True on connect and False on disconnect (in the link's thread).
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
        on_ack: AckFn = lambda gen, mid, ok, reason: None,
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
        self.driver: Driver | None = None
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
        self._stop = threading.Event()
        self._ended = False  # the current connection is over (set in paho's callbacks, our thread)
        self._connack_at: float | None = None
        self._thread: threading.Thread | None = None
        self._tid: int | None = None
        self._calls: deque[_Call] = deque()
        self._wake_r: socket.socket | None = None  # the wake-up socket pair (made by start)
        self._wake_w: socket.socket | None = None
        self._wake_pending = False
        self._password = cfg.resolved_password()  # resolved once: a missing file is a config error at start
        self._key_password = cfg.tls.resolved_key_password() if cfg.tls.enabled else None
        self._stop_deadline = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        if self._wake_r is None:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._wake_pending = False
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish offline status (if connected), disconnect cleanly (no last will), end the thread."""
        self._stop_deadline = time.monotonic() + timeout_s
        self._stop.set()
        self.wake()
        if self._thread:
            self._thread.join(timeout_s + 2)
            if self._thread.is_alive():
                return  # still closing: it keeps its wake-up sockets
            self._thread = None
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None

    def wake(self) -> None:
        """Have the link's thread look again now (any thread; one byte on the wake-up socket, and
        none while one is already waiting to be read)."""
        w = self._wake_w
        if w is not None and not self._wake_pending:
            self._wake_pending = True
            try:
                w.send(b"\0")
            except OSError:  # full (it is being woken anyway) or closed
                pass

    def in_thread(self) -> bool:
        return threading.get_ident() == self._tid

    def call(self, fn: Callable[[paho.Client], Any], timeout_s: float = 2.0) -> Any:
        """Run ``fn(client)`` on the link's thread while connected (at once when called from it) and
        return its result; None when not connected (or when the thread does not get to it in time)."""
        if self.in_thread():
            client = self._client
            return fn(client) if client is not None and self.connected.is_set() else None
        if not self.connected.is_set() or not self.alive:
            return None
        job = _Call(fn)
        self._calls.append(job)
        self.wake()
        job.done.wait(timeout_s)
        return job.result

    # -- publishing ------------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> tuple[int, int] | None:
        """Hand a message to the current connection (any thread). Returns (generation, mid) or None if
        not connected."""
        gen, mids = self.publish_many([(topic, payload, qos, retain)], properties)
        return (gen, mids[0]) if mids else None

    def publish_many(
        self, msgs: list[tuple[str, bytes, int, bool]], properties: Properties | None = None
    ) -> tuple[int, list[int]]:
        """Hand several ``(topic, payload, qos, retain)`` to the current connection (a backlog drains in
        bursts of hundreds). Returns (generation, mids): the mids of those taken, in order; fewer than
        given if the connection went away on the way. From another thread it goes through :meth:`call`."""
        if not self.in_thread():
            got = self.call(lambda c: self._publish_now(c, msgs, properties))
            return got if got is not None else (self.generation, [])
        client = self._client
        if client is None or not self.connected.is_set():
            return self.generation, []
        return self._publish_now(client, msgs, properties)

    def _publish_now(
        self, client: paho.Client, msgs: list[tuple[str, bytes, int, bool]], properties: Properties | None
    ) -> tuple[int, list[int]]:
        mids: list[int] = []
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
        return self.generation, mids

    def republish_birth(self) -> None:
        """Publish the birth again (any thread)."""

        def birth(client: paho.Client) -> None:
            if self.session is not None:
                client.publish(self.topics.status, json.dumps(self._birth(self.session)), qos=1, retain=True)

        self.call(birth)

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
        c.suppress_exceptions = True  # a bug in a callback is logged, it does not end the connection
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
        c.on_socket_register_write = _defer_write  # we write (see _flush)
        return c

    def _run(self) -> None:
        self._tid = threading.get_ident()
        # reconnect_initial_s doubling to reconnect_max_s, "equal jitter" (between half and all of it)
        backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, jitter=EQUAL)
        try:
            while not self._stop.is_set():
                up_at = self._attempt()
                if self._stop.is_set():
                    break
                if up_at is not None:
                    backoff.reset()  # a connection that reached CONNACK resets the backoff
                delay = backoff.next_delay()
                self.next_attempt_in = delay
                log.info("mqtt: reconnecting in %.1f s", delay)
                end = time.monotonic() + delay
                while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
                    self._wait(None, min(left, self._pump()))
            self.next_attempt_in = None
        finally:
            self._fail_calls()
            driver = self.driver
            if driver is not None:
                try:
                    driver.ended()
                except Exception:  # noqa: BLE001
                    log.exception("mqtt: the publisher's end failed")

    def _pump(self) -> float:
        """Queued calls from other threads, then the driver; returns how long the driver may wait."""
        calls = self._calls
        while calls:
            job = calls.popleft()
            client = self._client
            try:
                if client is not None and self.connected.is_set():
                    job.result = job.fn(client)
            except Exception:  # noqa: BLE001 - one bad call must not end the connection
                log.exception("mqtt: a queued call failed")
            job.done.set()
        driver = self.driver
        if driver is None:
            return 1.0
        try:
            return driver.pump()
        except Exception:  # noqa: BLE001 - a bug there must not end the connection; try again shortly
            log.exception("mqtt: the publisher failed")
            return 1.0

    def _fail_calls(self) -> None:
        while self._calls:
            self._calls.popleft().done.set()

    def _wait(self, client: paho.Client | None, timeout: float) -> None:
        """One network round: wait (at most ``timeout``) for the socket or a wake-up, then read what
        came in and write what is waiting. ``client`` None: only the wake-up (between connections)."""
        wake = self._wake_r
        assert wake is not None  # made by start(), closed only once the thread has ended
        sock = client.socket() if client is not None else None
        if sock is None:
            rl, wl = [wake], []
        else:
            assert client is not None
            if client.want_write():  # what the driver (or a queued call) just handed paho
                self._flush(client)
            if hasattr(sock, "pending") and sock.pending():  # TLS: bytes already decrypted
                timeout = 0.0
            rl, wl = [sock, wake], ([sock] if client.want_write() else [])  # only while the socket is full
        try:
            r, w, _ = select.select(rl, wl, [], max(0.0, timeout))
        except (OSError, ValueError, TypeError):  # the socket was closed under us: the connection is over
            self._ended = True
            return
        if wake in r:
            try:
                while wake.recv(4096):
                    pass
            except OSError:
                pass
            # after reading (cleared before, a wake() in between would leave it set with its byte read:
            # every later wake() skipped). A wake() skipped until here is seen by the pump that follows
            self._wake_pending = False
        if client is None or sock is None:
            return
        if sock in r or (hasattr(sock, "pending") and sock.pending()):
            client.loop_read()  # every PUBACK waiting: the driver's on_ack runs for each, here
        if w or client.want_write():  # paho queued the next PUBLISHes while it read the PUBACKs
            self._flush(client)

    @staticmethod
    def _flush(client: paho.Client) -> None:
        coalesce(client._out_packet)  # paho's queue of packets to write
        client.loop_write()

    def _attempt(self) -> float | None:
        """One connection: returns the time CONNACK succeeded, or None if it never did."""
        self.attempts += 1
        session = self._next_session()
        client = self._make_client(session)
        self._ended = False
        self._connack_at = None
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
            self._drop_client(client)
            return None
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        next_misc = time.monotonic() + _MISC_S
        while not self._ended and not self._stop.is_set():
            wait = self._pump()
            if self._ended or self._stop.is_set():
                break
            now = time.monotonic()
            if now >= next_misc:
                client.loop_misc()  # keepalive: PINGREQ when idle, the connection ends on a lost PINGRESP
                next_misc = now + _MISC_S
                if self._connack_at is None and now > deadline:
                    self._error(f"no CONNACK from {host}:{port} within {self.cfg.connect_timeout_s:.0f} s")
                    break
            self._wait(client, min(wait, next_misc - now))
        if self._stop.is_set() and self.connected.is_set():
            self._clean_disconnect(client, session)
        was_up = self._connack_at
        self._set_connected(False)
        self._fail_calls()
        self._drop_client(client)
        return was_up

    def _clean_disconnect(self, client: paho.Client, session: int) -> None:
        """At stop: publish the offline status, run the network until its PUBACK (or the deadline),
        then DISCONNECT (no last will)."""
        try:
            info = client.publish(self.topics.status, json.dumps(self._death(session)), qos=1, retain=True)
            while not info.is_published() and not self._ended:
                left = self._stop_deadline - time.monotonic()
                if left <= 0:
                    log.warning("mqtt: offline status not acknowledged at stop")
                    break
                self._wait(client, min(left, 0.1))
        except (RuntimeError, ValueError) as exc:
            log.warning("mqtt: offline status not acknowledged at stop: %s", exc)
        if not self._ended:
            client.disconnect()
            self._flush(client)  # paho writes it and closes the socket

    def _drop_client(self, client: paho.Client) -> None:
        if client.socket() is not None:  # not closed by paho (a failed or abandoned connection)
            try:
                client.disconnect()
                self._flush(client)
            except Exception:  # noqa: BLE001
                pass
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
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

    # -- paho callbacks (the link's thread, from within loop_read / loop_write) -------------------
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

    def _cb_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # once per message: as little as possible (reason codes >= 0x80 are failures)
        d = self.driver
        (d.on_ack if d is not None else self.on_ack)(
            self.generation, mid, getattr(reason, "value", 0) < 0x80, reason
        )

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            self._on_message(msg.topic, msg.payload, getattr(msg, "properties", None))
        except Exception:  # noqa: BLE001 - one bad message must not stop the connection
            log.exception("handling a message on %s failed", msg.topic)
