"""The single database writer.

Every stage hands its writes to one thread through a bounded queue and never touches the disk
itself. The writer commits in batched transactions (many rows per fsync), so capture and inference
never wait for the disk. If the writer falls behind, :meth:`Writer.submit` refuses new work instead
of growing memory, and counts what it refused per kind (``drops``) so the loss is visible in the
stats, the summaries and the health report, never silent.

A write is either rows for a table (``submit_rows``) or a function of the connection
(``submit_fn``), run inside the batch's transaction under its own savepoint, so one failing write
cannot take the others down. When the disk is full (``SQLITE_FULL``), the batch is kept and retried
with backoff until space returns; nothing already accepted is lost. Between two tries the writer
calls ``relief(conn)`` (retention's prune of one chunk, see :meth:`agent.sync.retention.Retention.relieve`)
on its own connection: a prune queued behind the stuck batch could never run.

This module is the writer's queue and thread (submitting, batching, stopping); the commit of one
batch, its retries and its splitting are in :mod:`agent.store.commit`.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from agent.store.commit import BatchCommits, WriteFn, WriteOp, fix_hint
from agent.store.db import Database

log = logging.getLogger(__name__)

_STOP = object()
_WAKE = object()  # a call() is waiting in the priority lane


class Writer(BatchCommits):
    """The one thread that writes to the database (its commits: :class:`~agent.store.commit.BatchCommits`).

    Args:
        database: the open :class:`Database`; the writer owns its connection from ``start()`` on.
        max_queue: the most pending writes held in memory; beyond it ``submit_*`` returns False.
        max_batch: the most writes committed in one transaction.
        max_batch_rows: the most rows committed in one transaction (default: what fits the WAL's share
            of the size budget, ~256 bytes a row with its indexes, so one transaction cannot fill a
            small disk; 20000 without a budget).
        max_delay_s: how long a write may wait for its batch to fill before it is committed.
    """

    def __init__(
        self,
        database: Database,
        *,
        max_queue: int = 2000,
        max_batch: int = 500,
        max_delay_s: float = 0.25,
        max_batch_rows: int | None = None,
    ) -> None:
        self.database = database
        wal = getattr(database, "wal_bytes", None)
        self.max_batch_rows = max_batch_rows or (max(50, wal // 256) if wal else 20000)
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._prio: deque[WriteOp] = deque()  # call(): rare writes that must not wait behind the queue
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._committed = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.drops: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.committed_rows = 0
        self.batches = 0
        self.last_progress = time.monotonic()
        self.last_error: str | None = None
        self.disk_full = False
        #: called on the writer's connection when the disk is full; True when it freed room
        self.relief: Callable[[sqlite3.Connection], bool] | None = None
        #: called on the writer's connection before each try of a batch (retention: how far the file may grow)
        self.guard: Callable[[sqlite3.Connection], None] | None = None
        self._give_up = threading.Event()  # set by stop() at its deadline: no more retries
        self._lost_msg: str | None = None
        self._lost_logged = 0.0
        self._lost_quiet = 0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Commit everything accepted so far, then stop the thread. A batch still stuck at the deadline
        (a disk that stays full) is counted as failed and logged, and the thread ends: none is left
        retrying behind a closed database."""
        if not self._thread:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._q.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    log.error("writer queue still full at stop; %d writes pending", self._q.qsize())
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._give_up.set()  # no more retries: what is left is counted as failed
            self._thread.join(5.0)
        if self._thread.is_alive():
            log.error("database writer did not finish within %.0f s", timeout_s)
        self._thread = None

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    @property
    def pending(self) -> int:
        return self._q.qsize()

    # -- submitting ------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def _put(self, op: WriteOp) -> bool:
        try:
            self._q.put_nowait(op)
            return True
        except queue.Full:
            self.drops[op.kind] += len(op.rows) if op.rows is not None else 1
            return False

    def submit_rows(self, table: str, rows: Sequence[dict[str, Any]], *, kind: str | None = None) -> bool:
        """Queue rows for ``table``. Returns False (and counts the drop) if the writer is full."""
        if not rows:
            return True
        return self._put(WriteOp(self._next_seq(), kind or table, table=table, rows=list(rows)))

    def submit_fn(
        self,
        fn: WriteFn,
        *,
        kind: str = "fn",
        block: bool = False,
        timeout_s: float = 5.0,
        urgent: bool = False,
    ) -> bool:
        """Queue a function run in the writer's transaction. ``block`` waits for room instead of dropping
        (for rare, must-keep writes such as a summary and its bookkeeping). ``urgent`` commits the batch
        it joins without waiting out ``max_delay_s`` (for a rare write another thread waits on, such as
        the last delivery marks of a drained outbox)."""
        op = WriteOp(self._next_seq(), kind, fn=fn, urgent=urgent)
        if block:
            try:
                self._q.put(op, timeout=timeout_s)
                return True
            except queue.Full:
                self.drops[kind] += 1
                return False
        return self._put(op)

    def call(self, fn: WriteFn, *, kind: str = "fn", timeout_s: float = 30.0) -> bool:
        """Run ``fn`` in the writer's next transaction, *ahead* of the queued writes, and wait until it
        is committed (for retention: pruning must not wait behind a full queue of detections).
        Returns False if it did not complete within ``timeout_s`` (it may still run later)."""
        done = threading.Event()
        op = WriteOp(0, kind, fn=fn, urgent=True, done=done)  # seq 0: flush() ignores it
        self._prio.append(op)
        try:
            self._q.put_nowait(_WAKE)
        except queue.Full:
            pass  # the writer is busy and looks at the lane before each batch
        return done.wait(timeout_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every write submitted before this call is committed (or failed for good)."""
        with self._seq_lock:
            target = self._seq
        with self._cond:
            return self._cond.wait_for(lambda: self._committed >= target, timeout=timeout_s)

    def stats(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "committed_rows": self.committed_rows,
            "batches": self.batches,
            "dropped": dict(self.drops),
            "failed": dict(self.failed),
            "disk_full": self.disk_full,
            "last_error": self.last_error,
            "alive": self.alive,
        }

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        conn = self.database.conn
        stopping = False
        while not stopping:
            batch: list[WriteOp] = []
            try:
                stopping = self._next_batch(batch)
            except Exception as exc:  # noqa: BLE001 - never die: what was taken is counted, not dropped silently
                log.exception("database writer: unexpected error while batching")
                if batch:
                    self._lose(batch, f"{type(exc).__name__}: {exc}", fix_hint(exc))
                    self._settle(batch)
                continue
            if batch:
                self._commit_with_retry(conn, batch, stopping)
        if self._give_up.is_set():  # stop() gave up waiting: fail what is still queued, visibly
            left: list[WriteOp] = []
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, WriteOp):
                    left.append(item)
            left.extend(self._prio)
            self._prio.clear()
            if left:
                self._lose(left, "the writer stopped before they could be committed", "see the error above")
                self._settle(left)

    def _next_batch(self, batch: list[WriteOp]) -> bool:
        """Fill ``batch`` with the next writes; True once the stop mark was taken."""
        stopping = False
        while self._prio:
            batch.append(self._prio.popleft())
        if batch:
            return False
        try:
            first = self._q.get(timeout=1.0)
        except queue.Empty:
            self.last_progress = time.monotonic()
            return False
        if first is _WAKE:
            return False
        if first is _STOP:
            stopping = True
        else:
            batch.append(first)
            rows = len(first.rows) if first.rows is not None else 1
            deadline = time.monotonic() + self.max_delay_s
            while len(batch) < self.max_batch and rows < self.max_batch_rows and not batch[-1].urgent:
                try:
                    item = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if item is _WAKE:
                    break
                batch.append(item)
                rows += len(item.rows) if item.rows is not None else 1
        if stopping:  # drain what is left without waiting
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP and item is not _WAKE:
                    batch.append(item)
            while self._prio:
                batch.append(self._prio.popleft())
        return stopping

    def _commit_with_retry(self, conn: sqlite3.Connection, batch: list[WriteOp], stopping: bool) -> None:
        """Commit ``batch``, in order, keeping it through a full disk. Never raises: a write that cannot
        be committed for good is counted in ``failed`` and logged, and the thread goes on."""
        parts: deque[list[WriteOp]] = deque([batch])  # a work list, not recursion: halving stays bounded
        while parts:
            part = parts.popleft()
            try:
                halves = self._commit_part(conn, part, stopping)
            except Exception as exc:  # noqa: BLE001 - the writer thread must never die of one batch
                self._lose(part, f"{type(exc).__name__}: {exc}", fix_hint(exc))
                halves = None
            if halves:
                parts.extendleft(reversed(halves))  # the halves first, in order
            else:
                self._settle(part)

    def _settle(self, batch: list[WriteOp]) -> None:
        """``batch`` is committed or failed for good: wake flush() and call() waiters."""
        with self._cond:
            self._committed = max(self._committed, max(op.seq for op in batch))
            self._cond.notify_all()
        for op in batch:
            if op.done is not None:
                op.done.set()
        self.last_progress = time.monotonic()
