"""The publisher's delivery order: which outbox rows go to the broker next.

Pending rows are read a thousand at a time in one SQLite step (``outbox.fetch_pending``, on the
queue's own reader connection with ``text_factory = bytes``) into a buffer per priority class (one
for ``delivery = "seq"``, live and summaries for ``"live-first"``), each with its cursor, the last
seq read. :meth:`DeliveryQueue.take` gives the next rows, all of one kind: live rows first, then the
replays a technician asked for (``ReplayQueue``), then the backlog of summaries, the last two capped
at ``backfill_rate_per_s`` (a token bucket). Rows still in flight or waiting for their mark (the
publisher's ``busy`` set) are skipped when the buffers are read again from the first pending row.
:attr:`DeliveryQueue.handoff` is how many messages the publisher may hand paho at once (bounded by
the payload size seen). Everything here runs in the MQTT link's thread.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable

from agent.backoff import TokenBucket
from agent.sync import outbox
from agent.sync.commands import ReplayQueue
from agent.sync.config import MqttConfig

_FETCH = 1000
_HANDOFF = 1024  # most messages handed to paho at once (on the wire: at most max_inflight) ...
_HANDOFF_BYTES = 2 << 20  # ... and about this many bytes of them (but always two windows' worth)


class DeliveryQueue:
    """The rows to send next, in delivery order; see the module docstring."""

    def __init__(self, cfg: MqttConfig, reader: Callable[[], sqlite3.Connection], busy: set[int]) -> None:
        self.cfg = cfg
        self.reader = reader
        self.busy = busy  # the publisher's: in flight, or acknowledged but not yet marked
        self.replays = ReplayQueue(cfg.max_replay)  # bounded, merged (agent/sync/commands.py)
        self.conn: sqlite3.Connection | None = None
        self.handoff = max(2 * cfg.max_inflight, _HANDOFF)
        self._bucket = TokenBucket(cfg.backfill_rate_per_s, cfg.max_inflight)
        self._bufs: dict[int | None, deque[outbox.SendRow]] = {}
        self._cursor: dict[int | None, int] = {}
        self._more: dict[int | None, bool] = {}  # the last fetch of a class was full: more rows may wait
        self.reset()

    def _reader(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = self.reader()
            self.conn.text_factory = bytes  # payloads go out as bytes: no decode/encode per message
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def reset(self) -> None:
        """Empty the buffers and read again from the first pending row (a new connection, a rescan)."""
        classes: list[int | None] = [None] if self.cfg.delivery == "seq" else [outbox.LIVE, outbox.SUMMARY]
        self._bufs = {c: deque() for c in classes}
        self._cursor = {c: 0 for c in classes}
        self._more = {c: True for c in classes}

    def refill_all(self) -> None:
        """Look for new rows in every class."""
        for c in self._bufs:
            self.refill(c)

    def read_ahead(self) -> None:
        """Refill the classes whose last read was full (more rows may wait)."""
        for c in self._bufs:
            if self._more[c]:
                self.refill(c)

    def has_more(self) -> bool:
        """Rows buffered or replays queued."""
        return any(self._bufs.values()) or bool(self.replays)

    def refill(self, cls: int | None) -> None:
        buf = self._bufs[cls]
        if len(buf) >= _FETCH // 2:
            return
        rows = outbox.fetch_pending(self._reader(), self._cursor[cls], _FETCH, cls)
        self._more[cls] = len(rows) == _FETCH
        if not rows:
            return
        # rows past the cursor are never in the buffer already; after a reset (cursor back to 0) the
        # ones still in flight or waiting for their mark are
        self._cursor[cls] = rows[-1][0]
        busy = self.busy
        buf.extend([r for r in rows if r[0] not in busy] if busy else rows)
        # hand paho at most _HANDOFF_BYTES of payload at once (but always two windows' worth)
        size = sum(len(r[2]) for r in rows[:32] if r[2] is not None) // min(32, len(rows)) or 1
        self.handoff = max(2 * self.cfg.max_inflight, min(_HANDOFF, _HANDOFF_BYTES // size))

    def take(self, room: int) -> tuple[list[outbox.SendRow], bool, float]:
        """The next rows to send, all of one kind (live, replay or backlog), at most ``room``, and
        whether they are a replay; with nothing to send, the seconds until the backfill cap allows the
        next one (or 0.0)."""
        live = self._bufs.get(outbox.LIVE)
        if live:
            return [live.popleft() for _ in range(min(room, len(live)))], False, 0.0
        while (rng := self.replays.first()) is not None:
            want = min(room, _FETCH)
            tokens = want
            if self._bucket.rate > 0:  # replays go through the backfill cap too
                tokens, wait = self._bucket.take_up_to(want)
                if not tokens:
                    return [], False, wait
            rows = outbox.fetch_range(self._reader(), rng[0], rng[1], limit=tokens)
            self._bucket.give_back(tokens - len(rows))
            if not rows:
                self.replays.done_until(rng[1])
                continue
            self.replays.done_until(rng[1] if len(rows) < tokens else rows[-1][0])
            return rows, True, 0.0
        cls = None if None in self._bufs else outbox.SUMMARY
        buf = self._bufs[cls]
        if not buf:
            self.refill(cls)
        if not buf:
            return [], False, 0.0
        n = min(room, len(buf))
        if (
            self._bucket.rate > 0
        ):  # the backfill cap: summaries take a token each (live rows in "seq" mode do not)
            tokens, wait = self._bucket.take_up_to(n)
            out: list[outbox.SendRow] = []
            while buf and len(out) < n:
                if buf[0][5] >= outbox.SUMMARY:
                    if not tokens:
                        break
                    tokens -= 1
                out.append(buf.popleft())
            self._bucket.give_back(tokens)
            return out, False, (wait if not out else 0.0)
        return [buf.popleft() for _ in range(n)], False, 0.0
