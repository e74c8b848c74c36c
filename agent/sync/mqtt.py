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

The paho client's options (protocol, session, credentials, TLS, last will), its CONNECT, the
coalesced writes and the error texts are in :mod:`agent.sync.mqtt_client`; the wake-up and the
calls other threads hand this thread in :mod:`agent.sync.mqtt_inbox`.
"""

from __future__ import annotations

import json
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from agent.backoff import EQUAL, Backoff
from agent.sync import mqtt_client
from agent.sync.config import MqttConfig
from agent.sync.mqtt_client import ConnectionState
from agent.sync.mqtt_client import _defer_write as _defer_write  # re-exported (tests)
from agent.sync.mqtt_client import coalesce as coalesce  # re-exported (tests)
from agent.sync.mqtt_client import describe_connack as describe_connack  # re-exported (doctor) ...
from agent.sync.mqtt_client import describe_connect_error as describe_connect_error  # ... both
from agent.sync.mqtt_inbox import Inbox
from agent.sync.topics import Topics

log = logging.getLogger(__name__)


AckFn = Callable[[int, int, bool, Any], None]  # (generation, mid, ok, reason code)
MessageFn = Callable[[str, bytes, Any], None]  # (topic, payload, properties)


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


_MISC_S = 1.0  # paho's loop_misc (keepalive ping, ping timeout) at least this often


class MqttLink(ConnectionState):
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
        super().__init__(
            cfg,
            client_id,
            topics,
            birth=birth,
            death=death,
            on_message=on_message,
            on_state=on_state,
            subscriptions=subscriptions,
        )
        self._next_session = next_session
        self.on_ack = on_ack
        self.driver: Driver | None = None
        self.generation = 0
        self.next_attempt_in: float | None = None
        self._client: paho.Client | None = None
        self._thread: threading.Thread | None = None
        self._tid: int | None = None
        self._inbox = Inbox()  # the wake-up socket pair (made by start) and calls from other threads
        self._password = cfg.resolved_password()  # resolved once: a missing file is a config error at start
        self._key_password = cfg.tls.resolved_key_password() if cfg.tls.enabled else None
        self._stop_deadline = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._inbox.open()
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
        self._inbox.close()

    def wake(self) -> None:
        """Have the link's thread look again now (any thread; one byte on the wake-up socket, and
        none while one is already waiting to be read)."""
        self._inbox.wake()

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
        return self._inbox.call(fn, timeout_s)

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
        c = mqtt_client.make_client(
            self.cfg,
            self.client_id,
            password=self._password,
            key_password=self._key_password,
            will_topic=self.topics.status,
            will=json.dumps(self._death(session)),
        )
        c.on_connect = self._cb_connect
        c.on_disconnect = self._cb_disconnect
        c.on_publish = self._cb_publish
        c.on_message = self._cb_message
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
        if self._inbox.calls:
            self._inbox.run(self._live_client)
        driver = self.driver
        if driver is None:
            return 1.0
        try:
            return driver.pump()
        except Exception:  # noqa: BLE001 - a bug there must not end the connection; try again shortly
            log.exception("mqtt: the publisher failed")
            return 1.0

    def _live_client(self) -> paho.Client | None:
        return self._client if self.connected.is_set() else None

    def _fail_calls(self) -> None:
        self._inbox.fail()

    def _wait(self, client: paho.Client | None, timeout: float) -> None:
        """One network round: wait (at most ``timeout``) for the socket or a wake-up, then read what
        came in and write what is waiting. ``client`` None: only the wake-up (between connections)."""
        wake = self._inbox.r
        assert wake is not None  # made by start(), closed only once the thread has ended
        sock = client.socket() if client is not None else None
        rl: list[Any]  # paho's socket, or its TLS wrapper (what select() takes: anything with fileno())
        wl: list[Any]
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
            self._inbox.drain()
        if client is None or sock is None:
            return
        if sock in r or (hasattr(sock, "pending") and sock.pending()):
            client.loop_read()  # every PUBACK waiting: the driver's on_ack runs for each, here
        if w or client.want_write():  # paho queued the next PUBLISHes while it read the PUBACKs
            self._flush(client)

    _flush = staticmethod(mqtt_client.flush)  # the round's packets coalesced, then paho's write

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
            mqtt_client.send_connect(client, self.cfg)
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
        mqtt_client.close(client)  # what paho did not close (a failed or abandoned connection)
        self._client = None

    # -- the ack path (the link's thread, from within loop_read) -------------------------------
    def _cb_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # once per message: as little as possible (reason codes >= 0x80 are failures)
        d = self.driver
        (d.on_ack if d is not None else self.on_ack)(
            self.generation, mid, getattr(reason, "value", 0) < 0x80, reason
        )
