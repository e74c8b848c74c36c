"""The database writer's commit of one batch: one transaction, kept through a full disk.

:class:`BatchCommits` is the commit half of :class:`agent.store.writer.Writer` (the other half is
its queue and thread). A batch is committed in one ``BEGIN IMMEDIATE`` transaction: consecutive
rows go in with ``executemany``, each function under its own savepoint, so one failing write cannot
take the others down. A transient error (a full disk, a locked or busy database, an I/O error) keeps
the batch and retries it with backoff, asking ``relief`` for room first when the disk is full; a
batch too big for what is left is split in halves, and so is a batch with one bad write among good
ones. What fails for good is counted in ``failed`` and logged, never silently dropped.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agent.store.writer")  # the writer's log lines, wherever its code lives

WriteFn = Callable[[sqlite3.Connection], Any]

FIRST_RETRY_S = 0.5  # the wait before the first retry of a kept batch, doubling
MAX_RETRY_S = 30.0


@dataclass(slots=True)
class WriteOp:
    """One accepted write: rows for a table, or a function of the connection."""

    seq: int
    kind: str
    table: str | None = None
    rows: Sequence[dict[str, Any]] | None = None
    fn: WriteFn | None = None
    urgent: bool = False
    done: threading.Event | None = None


class _Next(enum.Enum):
    """What the commit of a batch does after an error."""

    RETRY = enum.auto()  # try the same batch again
    SPLIT = enum.auto()  # try its halves, one after the other
    DONE = enum.auto()  # failed for good (counted and logged)


@dataclass(slots=True)
class _Tries:
    """The retries of one batch."""

    delay: float = FIRST_RETRY_S
    failed: bool = False  # some try failed: a success is a recovery
    warned: bool = False  # a retry was logged: its recovery is logged too


class BatchCommits:
    """Commit batches of :class:`WriteOp` on the writer's connection (see the module's doc)."""

    # the writer's state this uses (set in Writer.__init__)
    failed: Counter[str]
    committed_rows: int
    batches: int
    last_error: str | None
    disk_full: bool
    relief: Callable[[sqlite3.Connection], bool] | None
    guard: Callable[[sqlite3.Connection], None] | None
    _give_up: threading.Event
    _lost_msg: str | None
    _lost_logged: float
    _lost_quiet: int

    def _commit_part(
        self, conn: sqlite3.Connection, batch: list[WriteOp], stopping: bool
    ) -> list[list[WriteOp]] | None:
        """Try ``batch`` until it is committed or failed for good (returns None), or return its halves
        to be tried one after the other (a full disk, or one bad write among good ones)."""
        tries: _Tries | None = None  # made at the first failure: a batch that goes in at once needs none
        while True:
            if self.guard is not None:
                try:
                    self.guard(conn)
                except Exception:  # noqa: BLE001 - a failing guard must not stop the writer
                    log.exception("database growth guard failed")
            try:
                self._commit(conn, batch)
            except sqlite3.OperationalError as exc:
                tries = tries or _Tries()
                step = self._after_operational_error(conn, batch, exc, tries)
            except Exception as exc:  # noqa: BLE001 - not a disk error: a bad row, a closed database, a bug
                step = self._split_or_lose(batch, f"{type(exc).__name__}: {exc}", exc)
            else:
                self.disk_full = False
                if tries is not None and tries.failed:
                    self._resumed(tries)
                return None
            if step is _Next.SPLIT:
                return _halves(batch)
            if step is _Next.DONE:
                return None

    def _resumed(self, tries: _Tries) -> None:
        """A batch went in after failed tries: the error is history, not the current state."""
        self.last_error = None
        if tries.warned:  # a retry that worked at once (after a relief) is not news
            log.warning("database writes resumed")

    def _after_operational_error(
        self, conn: sqlite3.Connection, batch: list[WriteOp], exc: sqlite3.OperationalError, tries: _Tries
    ) -> _Next:
        """A full disk, a locked/busy database or an I/O error keeps the batch (relief, then a retry
        with backoff, or its halves); any other operational error is the batch's own."""
        msg = str(exc)
        transient = "full" in msg or "locked" in msg or "busy" in msg or "disk I/O" in msg
        if not transient:
            return self._split_or_lose(batch, msg, exc)
        self.last_error = msg
        tries.failed = True
        self.disk_full = "full" in msg
        if self.disk_full and self.relief is not None and not self._give_up.is_set():
            if self._relieve(conn):
                tries.delay = FIRST_RETRY_S
                return _Next.RETRY
        if self._give_up.is_set():
            self._lose(
                batch,
                f"{msg} (still at shutdown)",
                "free space on the database's disk (df -h), then restart the agent",
            )
            return _Next.DONE
        if self.disk_full and len(batch) > 1:
            # a batch too big for what is left may fit in halves (in order; each half retried alike)
            return _Next.SPLIT
        self._wait_to_retry(batch, msg, tries)
        return _Next.RETRY

    def _relieve(self, conn: sqlite3.Connection) -> bool:
        """Ask ``relief`` to free room on the full disk; True when it did."""
        assert self.relief is not None
        try:
            return bool(self.relief(conn))
        except Exception:  # noqa: BLE001 - a failing relief must not stop the writer
            log.exception("relief on a full disk failed")
            return False

    def _wait_to_retry(self, batch: list[WriteOp], msg: str, tries: _Tries) -> None:
        tries.warned = True
        log.warning(
            "database write failed (%s); keeping %d writes, retrying in %.1f s",
            msg,
            len(batch),
            tries.delay,
        )
        self._give_up.wait(tries.delay)  # stop() cuts the wait short at its deadline
        tries.delay = min(tries.delay * 2, MAX_RETRY_S)

    def _split_or_lose(self, batch: list[WriteOp], msg: str, exc: BaseException) -> _Next:
        """A write the database refuses: find it among the others (halves), or lose it alone."""
        if len(batch) > 1:  # find the bad write: the others must not go down with it
            return _Next.SPLIT
        self._lose(batch, msg, fix_hint(exc))
        return _Next.DONE

    def _lose(self, batch: list[WriteOp], msg: str, hint: str) -> None:
        """Count ``batch`` as failed for good and say so (one log line per error and 10 s at most)."""
        for op in batch:
            self.failed[op.kind] += 1
        kinds = ", ".join(sorted({op.kind for op in batch}))
        self.last_error = f"{kinds}: {msg}"
        now = time.monotonic()
        if msg == self._lost_msg and now - self._lost_logged < 10.0:
            self._lost_quiet += len(batch)
            return
        more = f" (and {self._lost_quiet} more writes since the last such line)" if self._lost_quiet else ""
        log.error(
            "database write failed, %d %s writes lost%s: %s\n  fix: %s", len(batch), kinds, more, msg, hint
        )
        self._lost_msg, self._lost_logged, self._lost_quiet = msg, now, 0

    def _commit(self, conn: sqlite3.Connection, batch: list[WriteOp]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        rows_done = 0
        try:
            # Group consecutive row writes per table for executemany.
            for op in batch:
                if op.fn is not None:
                    conn.execute("SAVEPOINT op")
                    try:
                        op.fn(conn)
                        conn.execute("RELEASE op")
                    except Exception as exc:
                        # SQLite rolls the whole transaction back on SQLITE_FULL / I/O errors: then the
                        # batch must be retried as a whole (re-raise), never reported as one failed write
                        if not conn.in_transaction or (
                            isinstance(exc, sqlite3.OperationalError)
                            and ("full" in str(exc) or "disk I/O" in str(exc))
                        ):
                            raise
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        self.failed[op.kind] += 1  # a bug in one write must not lose the others
                        self.last_error = f"{op.kind}: {exc}"
                        log.exception("write %s failed", op.kind)
                else:
                    assert op.table is not None and op.rows is not None
                    cols = list(op.rows[0].keys())
                    sql = f"INSERT INTO [{op.table}] ({', '.join(f'[{c}]' for c in cols)}) VALUES ({', '.join('?' * len(cols))})"
                    conn.executemany(sql, [tuple(r.get(c) for c in cols) for r in op.rows])
                    rows_done += len(op.rows)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        self.committed_rows += rows_done
        self.batches += 1


def _halves(batch: list[WriteOp]) -> list[list[WriteOp]]:
    mid = len(batch) // 2
    return [batch[:mid], batch[mid:]]


def fix_hint(exc: BaseException) -> str:
    """The fix line for a write that failed for good."""
    text = str(exc)
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return "the database was closed while its writer still ran: stop the writer (Writer.stop) first"
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.InterfaceError)) or "no such" in text:
        return "a bug in the part that submitted this write (the other writes are kept); report it with this line"
    if isinstance(exc, sqlite3.DatabaseError):
        return "check the database (edge-agent status; PRAGMA integrity_check) and the disk it is on"
    return "a bug in the agent (the writer goes on, the other writes are kept); report it with this line"
