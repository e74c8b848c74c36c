"""The publisher: moves outbox rows to the broker and marks them delivered on PUBACK.

No thread of its own: it is the driver of the MQTT link's thread (``MqttLink``), which runs paho's
network loop itself and calls :meth:`Publisher.pump` between network events. So one thread reads
the outbox, hands paho the messages and takes their PUBACKs (``on_ack``, called from within paho's
read): no message passes from one thread to another (issue #15). Other threads only set flags and
wake the link (``notify``, ``replay``); the writer commits the marks and wakes it again.

At most ``max_inflight`` messages are on the wire waiting for their PUBACK (paho enforces it); the
publisher hands paho more than that (up to ``_HANDOFF`` messages, about ``_HANDOFF_BYTES`` of them,
at least two windows), so paho sends the next one from within the same read as the PUBACK that
freed its slot, and the publisher's own step runs once per ``_ACK_BATCH`` acks (or when everything
handed out is acknowledged, or a timer is due), not per message. A row becomes ``delivered`` only
when its PUBACK arrives (marks are batched through the single writer). Order: ``seq`` order within
a priority class; in ``live-first`` mode health and events go before a backlog of summaries,
replays go between the two, and the backlog is capped at ``backfill_rate_per_s`` (token bucket).
When the connection is replaced, whatever was in flight is sent again (the hub removes duplicates
by ``seq``): at-least-once, never silently lost.

Rows are plain tuples read a thousand at a time in one SQLite step (``outbox.fetch_pending``);
which go next (live first, replays, the capped backlog) is the ``DeliveryQueue``'s part
(agent/sync/delivery.py); marks go to the writer in one write per batch; only the last marks of a drained outbox are
committed at once (nothing left to batch with). ``benchmarks/sync_bench.py`` measures the result
against a bare paho loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.config import MqttConfig
from agent.sync.delivery import DeliveryQueue
from agent.sync.mqtt import MqttLink

log = logging.getLogger(__name__)

_ACK_BATCH = 256  # the step runs once per this many acks (paho still holds the rest to send)
_MARK_BATCH = 200
_MARK_DELAY_S = 0.1
_REFRESH_S = 1.0  # look for new rows at least this often
_RESCAN_S = 10.0  # look again from the first pending row (rows re-queued by a technician)


class Publisher:
    """Sends outbox rows over ``link``; see the module docstring."""

    def __init__(
        self, cfg: MqttConfig, link: MqttLink, writer: Writer, reader: Callable[[], sqlite3.Connection]
    ) -> None:
        self.cfg = cfg
        self.link = link
        self.writer = writer
        self.reader = reader
        self._marked: deque[int] = deque()  # seqs whose marks the writer committed (its thread appends)
        self._stop = threading.Event()
        self._stopped = threading.Event()  # set when the last marks were handed over at stop
        self._step_at = -1  # pump runs the step once no more than this many are in flight (a batch of acks)
        self._next_step = 0.0  # ... or at this monotonic time
        self._dirty = True
        self.idle = threading.Event()  # set when nothing is in flight, buffered or waiting to be marked
        self.inflight: dict[int, int] = {}  # paho's mid -> seq, for the connection self._gen
        self.busy: set[int] = set()  # in flight, or acknowledged but not yet marked
        self._queue = DeliveryQueue(cfg, reader, self.busy)  # what goes next; its reader connection
        self._delivered: list[int] = []  # acknowledged, mark not yet handed to the writer
        self._rejected: list[int] = []
        self._mark_since = 0.0
        self._suffix: dict[tuple[int, bool], bytes] = {}  # (session, replay) -> b',"session":N}'
        self._topics: dict[bytes, str] = {}  # topic as read (bytes) -> str for paho
        self._gen = -1
        self._last_rescan = time.monotonic()
        self._last_refresh = 0.0
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.republished = 0
        self.last_progress = time.monotonic()
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Become the link's driver (its thread runs :meth:`pump`)."""
        self._stop.clear()
        self._stopped.clear()
        self.link.driver = self
        self.link.wake()

    @property
    def alive(self) -> bool:
        return self.link.driver is self and not self._stop.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Hand the last marks to the writer (waiting for room in its queue) and detach from the link."""
        self._stop.set()
        if self.link.alive and self.link.driver is self:
            self.link.wake()  # the link's thread finishes (pump sees the stop)
            self._stopped.wait(timeout_s)
        else:
            self._finish()
        if self.link.driver is self:
            self.link.driver = None

    def drain(self, deadline: float) -> bool:
        """Wait (until monotonic ``deadline``) for every pending row to be acknowledged and marked."""
        self.idle.clear()
        self.notify()
        while time.monotonic() < deadline:
            if not self.link.connected.is_set():
                return False
            if self.idle.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                if self.pending_count() == 0:
                    return True
                self.idle.clear()  # rows the publisher has not seen yet: make it look again
                self.notify()
        return False

    # -- signals from other threads --------------------------------------------------------------
    def notify(self) -> None:
        """New rows were committed (or something else changed): look again."""
        self._dirty = True
        self.link.wake()

    def on_ack(self, gen: int, mid: int, ok: bool, reason: Any) -> None:
        """Every PUBACK, in the link's thread from within paho's read (as is everything here but the
        signals above): keep it cheap. The step that marks and tops paho up runs once a batch."""
        if gen != self._gen:
            return  # from a connection this publisher has not taken stock of (its rows go again)
        seq = self.inflight.pop(mid, None)
        if seq is None:
            return  # birth/status, or a reply
        if ok:
            self._delivered.append(seq)
            self.acked += 1
        else:
            self._rejected.append(seq)
            self.rejected += 1
            self.last_error = f"broker rejected seq {seq}: {reason}"
            log.warning(self.last_error)

    def on_state(self, up: bool) -> None:
        self.notify()

    def replay(self, from_seq: int, to_seq: int) -> int:
        """Queue a replay (merged with those queued); returns the seqs newly queued. Raises
        ``CommandError("busy")`` over the bound."""
        n = self._queue.replays.add(from_seq, to_seq)
        self.link.wake()
        return n

    def pending_count(self) -> int:
        conn = self.reader()  # its own connection: called from other threads
        try:
            return conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        finally:
            conn.close()

    # -- the thread ------------------------------------------------------------------------------
    def pump(self) -> float:
        """Called by the link's thread after every network event and wake-up: runs the step when a
        batch of acks came in, something changed or a timer is due; returns the seconds it may wait."""
        if self._stop.is_set():
            if not self._stopped.is_set():
                self._finish()
            return 1.0
        now = time.monotonic()
        if (
            not self._dirty
            and not self._marked
            and now < self._next_step
            and len(self.inflight) > self._step_at
        ):
            return self._next_step - now
        try:
            wait = self._step()
        except sqlite3.Error as exc:  # a read failed (disk trouble): keep going, try again shortly
            self.last_error = f"outbox read failed: {exc}"
            log.warning(self.last_error)
            self._queue.conn = None
            wait = 1.0
        now = time.monotonic()
        self.last_progress = now
        self._next_step = now + wait
        return wait

    def ended(self) -> None:
        """The link's thread is ending: hand the marks over (at stop, all of them) and close the reader."""
        if self._stop.is_set():
            self._finish()
        else:
            self._flush_marks(urgent=True)
            self._close()

    def _finish(self) -> None:
        try:
            self._flush_marks(force=True)
        finally:
            self._close()
            self._stopped.set()

    def _close(self) -> None:
        self._queue.close()

    def _step(self) -> float:
        """One round: release marked rows, publish what the window allows, hand marks over. Returns how
        long to wait."""
        dirty, self._dirty = self._dirty, False
        if self._marked:  # committed marks: those rows may be read again (as delivered, they will not be)
            self._release_marked()
        if self.link.generation != self._gen:  # a new connection: what was in flight goes again
            self._new_connection()
        now = time.monotonic()
        if now - self._last_rescan > _RESCAN_S and not self.inflight:
            self._last_rescan = now
            self._queue.reset()
        if dirty or now - self._last_refresh > _REFRESH_S:
            self._last_refresh = now
            self._queue.refill_all()
        if not self.link.connected.is_set():
            self._flush_marks()
            return 0.5
        wait = self._top_up()
        if wait is None:  # the connection went away
            self._flush_marks()
            return 0.5
        # read ahead now, while paho holds a full queue (a fetch takes milliseconds: better while paho
        # still has messages to send than only when a buffer has run empty)
        self._queue.read_ahead()
        # marks after topping paho up (the wire comes first). With nothing in flight and nothing left to
        # send (a drained outbox) no more acks are coming to batch with: hand the marks over now and
        # have the writer commit them at once instead of after its batching delay
        more = self._queue.has_more()
        self._flush_marks(urgent=not self.inflight and not more)
        return self._next_wait(wait, more)

    def _release_marked(self) -> None:
        done = []
        while self._marked:
            done.append(self._marked.popleft())
        self.busy.difference_update(done)

    def _new_connection(self) -> None:
        self._gen = self.link.generation
        if self.inflight:
            self.republished += len(self.inflight)
            self.busy.difference_update(self.inflight.values())
            self.inflight.clear()
        self._queue.reset()

    def _top_up(self) -> float | None:
        """Hand paho what the window allows. Returns how long to wait at most (the backfill cap's wait
        when that is what stops it), or None if the connection went away on the way."""
        wait = _REFRESH_S
        # paho keeps at most max_inflight on the wire; we hand it more (bounded in count and bytes), so it
        # sends the next message from within the read that took the PUBACK (no step per message)
        while not self._stop.is_set():
            room = self._queue.handoff - len(self.inflight)
            if room <= 0:
                break
            rows, replay, wait_token = self._queue.take(room)
            if not rows:
                if wait_token:
                    wait = min(wait, wait_token)
                break
            if not self._send(rows, replay):
                return None
        return wait

    def _next_wait(self, wait: float, more: bool) -> float:
        """When the next step is due: after a batch of acks, or when all that is outstanding is
        acknowledged (or ``wait``); sets ``idle`` when nothing is in flight, buffered or to be marked."""
        n = len(self.inflight)
        self._step_at = n - max(1, min(_ACK_BATCH, n))
        marks = self._delivered or self._rejected
        if marks or self.inflight:
            wait = min(wait, _MARK_DELAY_S)
        if not marks and not self.inflight and not self.busy and not more:
            self.idle.set()
        else:
            self.idle.clear()
        return wait

    def _send(self, rows: list[outbox.SendRow], replay: bool) -> bool:
        """Hand ``rows`` to paho. False if the connection went away (the rest stay pending)."""
        session = self.link.session or 0
        suffix = self._suffix.get((session, replay))
        if suffix is None:  # once per connection (cached: this runs for every message)
            suffix = (f',"session":{session}' + (',"replay":true' if replay else "") + "}").encode()
            self._suffix = {k: v for k, v in self._suffix.items() if k[0] == session}
            self._suffix[(session, replay)] = suffix
        topics = self._topics
        msgs: list[tuple[str, bytes, int, bool]] = []
        seqs = []
        for seq, topic, body, qos, retain, _ in rows:
            if body is None:  # its text was deleted behind the agent's back: say so, do not stall on it
                self._rejected.append(seq)
                self.busy.add(seq)  # released when the mark is committed, like an acknowledged row
                self.rejected += 1
                self.last_error = (
                    f"outbox seq {seq} has no message text (outbox_payload row missing); marked rejected"
                )
                log.error(self.last_error)
                continue
            if isinstance(topic, bytes):  # read with text_factory=bytes; a device has a handful of topics
                topic = topics.get(topic) or topics.setdefault(topic, topic.decode())
            msgs.append((topic, body[:-1] + suffix, qos, bool(retain)))
            seqs.append(seq)
        if not msgs:
            return True
        gen, mids = self.link.publish_many(msgs)
        if gen != self._gen:  # a connection we have not taken stock of yet: its acks are not counted
            mids = []
        self.inflight.update(zip(mids, seqs))
        self.busy.update(seqs[: len(mids)])
        self.published += len(mids)
        if len(mids) < len(msgs):  # connection went away: those rows are still pending, they go again later
            self._dirty = True
            return False
        return True

    def _flush_marks(self, force: bool = False, urgent: bool = False) -> None:
        """Hand collected marks to the writer: per ``_MARK_BATCH`` or ``_MARK_DELAY_S``, or at once when
        ``urgent`` (the writer then skips its batching delay too); ``force`` (at stop) also waits for
        room in the writer's queue."""
        n = len(self._delivered) + len(self._rejected)
        if not n:
            self._mark_since = 0.0
            return
        t = time.monotonic()
        if not self._mark_since:
            self._mark_since = t
        if not force and not urgent and n < _MARK_BATCH and t - self._mark_since < _MARK_DELAY_S:
            return
        marks = {k: v for k, v in (("delivered", self._delivered), ("rejected", self._rejected)) if v}
        done, wake = self._marked, self.link.wake

        def committed_hook(conn: sqlite3.Connection) -> None:
            for state, seqs in marks.items():
                outbox.mark(conn, seqs, state)
            for seqs in marks.values():
                done.extend(seqs)
            wake()  # the link's thread releases them (no new rows: not dirty)

        if outbox.submit(
            self.writer, committed_hook, kind="outbox-ack", block=force, timeout_s=2.0, urgent=urgent or force
        ):
            self._delivered, self._rejected = [], []  # the hook owns the old lists now
            self._mark_since = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "in_flight": len(self.inflight),
            "published": self.published,
            "acked": self.acked,
            "rejected": self.rejected,
            "republished": self.republished,
            "replays_queued": self._queue.replays.queued(),
        }
