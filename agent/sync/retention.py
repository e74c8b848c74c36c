"""Keeping the database inside its size budget (``storage.max_db_mb``).

The budget covers the database file and its write-ahead log. The WAL gets a sixteenth of it (it is
checkpointed and truncated in small steps, see :func:`agent.store.db.wal_limits`); the rest is for
the pages in use (freed pages are reused by SQLite, so the file stops growing at about that).
Pruning starts *before* that is reached, at 90 % of it (:data:`HIGH_WATER`), and goes on down to
75 % (:data:`LOW_WATER`). It runs on its own thread
(``sync-retention``, a look every 0.25 s: two PRAGMAs and a stat), never behind the summaries, and the prune steps run in order,
each in chunks through the single writer:

1. raw detections, classifications and records (``results``), oldest first (only those already summarised);
2. delivered (or rejected) outbox messages, oldest first;
3. undelivered summaries, oldest first: recorded in ``outbox_gaps`` with the reason, and a ``gap``
   event is queued so the hub sees the gap and why.

When the disk itself is full (``SQLITE_FULL``, whatever filled it) the writer cannot commit, so a
prune queued behind its batch could never run: the writer then calls :meth:`Retention.relieve` on
its own connection, between two tries of the batch. It checkpoints the WAL (so the next write starts
it again from its beginning, reusing its file) and, when few pages of the file are free, deletes in
small chunks right there; the retried batch lands in the freed pages. Before each batch the writer
calls :meth:`Retention.guard`, which on a nearly full disk caps the file's growth
(``max_page_count``) to what the disk holds beyond the WAL's share and the reserve: a page new to the
file must never sit in a WAL that the checkpoint cannot write back for lack of room. A small reserve
file (``<database>-reserve``, the WAL's share of the budget, 64 KiB to 1 MiB) is kept beside the
database while there is room: on a full disk it is removed when the checkpoint has no room, and it
is written again once the disk has twice its size free.

Every step counts what it removed (``sync_state.pruned_*``, reported in health). Other parts of the
agent add their own raw tables with a ``PruneStep`` from their part (``Part.prune_steps``) (an order between 1 and 3).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.host import db_used_bytes
from agent.store.db import wal_limits
from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.topics import Topics

log = logging.getLogger(__name__)

#: pruning starts when the database (pages in use + WAL) reaches this share of the budget ...
HIGH_WATER = 0.9
#: ... and stops when it is back under this share
LOW_WATER = 0.75

PruneFn = Callable[[sqlite3.Connection, int], int]


@dataclass(frozen=True)
class PruneStep:
    order: int
    name: str
    fn: PruneFn


_STEPS: dict[str, PruneStep] = {}
_LOCK = threading.Lock()


def register_prune_step(order: int, name: str, fn: PruneFn) -> None:
    """Add a step: ``fn(conn, limit) -> rows deleted`` (in the writer's transaction). Lower orders run first;
    raw data belongs below 50 (delivered messages), nothing goes after 90 (undelivered summaries)."""
    with _LOCK:
        _STEPS[name] = PruneStep(order, name, fn)


def forget_prune_step(name: str) -> None:
    with _LOCK:
        _STEPS.pop(name, None)


def prune_steps() -> list[PruneStep]:
    with _LOCK:
        return sorted(_STEPS.values(), key=lambda s: (s.order, s.name))


def _summarised_until(conn: sqlite3.Connection) -> str | None:
    r = conn.execute("SELECT MAX(end) FROM summary_windows").fetchone()
    return r[0] if r else None


def prune_summarised(
    conn: sqlite3.Connection, limit: int, tables: list[tuple[str, str]], counter: str
) -> int:
    """Delete up to ``limit`` oldest rows of each ``(table, ts_column)`` that a written summary already
    covers (rows newer than the last summary window are never pruned here). Counted under ``counter``."""
    until = _summarised_until(conn)
    if until is None:
        return 0
    n = 0
    for table, ts_col in tables:
        if (
            conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
            is None
        ):
            continue
        n += conn.execute(
            f"DELETE FROM [{table}] WHERE rowid IN (SELECT rowid FROM [{table}] WHERE [{ts_col}] < ?"
            f" ORDER BY [{ts_col}], rowid LIMIT ?)",
            (until, limit),
        ).rowcount
    outbox.add_counter(conn, counter, n)
    return n


def prune_raw_detections(conn: sqlite3.Connection, limit: int) -> int:
    """Oldest detections, classifications and records already covered by a written summary."""
    return prune_summarised(
        conn, limit, [("detections", "ts"), ("classifications", "ts"), ("results", "ts")], "pruned_detections"
    )


# steps 10 (detections) and 50 (delivered messages) are declared by their parts (agent.inference.part,
# agent.sync.part); step 90 (undelivered summaries) needs the device's topics: added by Retention itself


class Retention:
    """Runs the prune steps when the database is over budget.

    Args:
        max_db_mb: the budget.
        writer: deletes run through it (``call``: ahead of its queue, waited for).
        reader: returns a read connection (to measure).
        topics: the device's topics (for the gap event).
        chunk: rows deleted per transaction.
    """

    def __init__(
        self,
        max_db_mb: float,
        writer: Writer,
        reader: Callable[[], sqlite3.Connection],
        topics: Topics,
        chunk: int = 2000,
    ) -> None:
        self.budget = int(max_db_mb * 2**20)
        self.writer = writer
        self.reader = reader
        self.topics = topics
        self.chunk = chunk
        self.runs = 0
        self.relief_runs = 0
        self.relief_prunes = 0  # reliefs that removed rows
        self.wal_bytes = wal_limits(max_db_mb)[1]
        # the reserve covers what the WAL may hold of pages new to the file: a checkpoint must write
        # them into the database file before the WAL can start again from its beginning
        self.reserve_bytes = max(64 * 1024, min(2**20, self.wal_bytes))
        self.reserve: Path | None = None  # set by keep_reserve() once the database's path is known
        #: the most pages the database file may have now (set by guard() on a nearly full disk), None: no cap
        self.cap_pages: int | None = None
        self._max_page_count: int | None = None  # SQLite's own limit, restored when the cap is lifted
        self._page_size = 4096
        self._last_restart: tuple[int | None, int] = (None, -1)
        self.last: dict[str, Any] = {}
        self.last_error: str | None = None

    def _undelivered(self, conn: sqlite3.Connection, limit: int) -> int:
        ranges = outbox.prune_undelivered(
            conn,
            limit,
            f"storage budget {self.budget / 2**20:.1f} MB exceeded",
            self.topics.kind("event"),
            {"device": self.topics.device, "site": self.topics.site},
        )
        return sum(b - a + 1 for a, b in ranges)

    @property
    def safe_chunk(self) -> int:
        """Rows per delete: ``chunk``, at most what keeps one delete's WAL frames well inside the WAL's
        share (a delete rewrites the pages it frees rows from; on a full disk the WAL cannot grow)."""
        return min(self.chunk, max(200, self.wal_bytes // 512))

    @property
    def page_budget(self) -> int:
        """The budget less the WAL's share: what the pages in use may take."""
        return self.budget - wal_limits(self.budget / 2**20)[1]

    def used(self) -> int:
        """Bytes of the pages in use (the WAL is bounded on its own)."""
        conn = self.reader()
        try:
            return db_used_bytes(conn)
        finally:
            conn.close()

    def _steps(self) -> list[PruneStep]:
        return prune_steps() + [PruneStep(90, "undelivered summaries", self._undelivered)]

    def keep_reserve(self, db_path: str | Path) -> None:
        """Write the reserve file if it is missing and the disk has room for twice its size."""
        self.reserve = Path(str(db_path) + "-reserve")
        if self.reserve.exists():
            return
        try:
            st = os.statvfs(self.reserve.parent)
            if st.f_bavail * st.f_frsize < 2 * self.reserve_bytes:
                return
            with open(self.reserve, "wb") as f:
                f.write(b"\0" * self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # no room after all, or a read-only directory: pruning still works
            self.reserve.unlink(missing_ok=True)
            log.debug("no reserve file beside the database: %s", exc)

    def _release_reserve(self) -> bool:
        if self.reserve is None or not self.reserve.exists():
            return False
        self.reserve.unlink(missing_ok=True)
        log.warning(
            "disk full: released the %d KiB reserve beside the database to prune", self.reserve_bytes // 1024
        )
        return True

    def guard(self, conn: sqlite3.Connection) -> None:
        """Before each batch, on the writer's connection: let the database file grow only into room the
        disk has beyond the WAL's share and the reserve (``PRAGMA max_page_count``).

        A page new to the file is written twice: into the WAL, then by the checkpoint into the file.
        If the disk fills in between, the checkpoint cannot run, the WAL cannot start again from its
        beginning and every later write (a prune too) needs the WAL to grow: nothing could be
        committed any more. With the cap, a write that needs a new page on a full disk fails at once
        with ``SQLITE_FULL`` (nothing written), the relief prunes, and the write lands in freed pages."""
        path = self.reserve.parent if self.reserve is not None else None
        if path is None:
            return
        st = os.statvfs(path)
        room = st.f_bavail * st.f_frsize - self.wal_bytes - self.reserve_bytes
        if room > 64 * (self.wal_bytes + self.reserve_bytes):  # plenty: no cap (the usual case)
            if self.cap_pages is not None:
                conn.execute(f"PRAGMA max_page_count = {self._max_page_count}").fetchall()
                self.cap_pages = None
            return
        if self._max_page_count is None:
            self._max_page_count = conn.execute("PRAGMA max_page_count").fetchone()[0]
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        cap = pages + max(0, room) // self._page_size
        if cap != self.cap_pages:
            conn.execute(f"PRAGMA max_page_count = {cap}").fetchall()
            self.cap_pages = cap

    def _checkpoint(self, conn: sqlite3.Connection) -> int | None:
        """WAL frames back into the file, so the next write starts the WAL again from its beginning
        (reusing its file) instead of growing it. Returns how many frames the WAL held, or None when
        it cannot start again (the file has no room for them, or a reader still needs them)."""
        try:
            busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            return None if busy else max(0, frames)
        except sqlite3.Error as exc:
            if "full" not in str(exc):
                raise
            return None

    def _prune_chunk(self, conn: sqlite3.Connection, step: PruneStep, limit: int) -> int:
        """One small delete in its own transaction (its WAL frames fit), then a checkpoint."""
        for attempt in (1, 2):
            try:
                conn.execute("BEGIN IMMEDIATE")
                n = step.fn(conn, limit)
                conn.execute("COMMIT")
                self._checkpoint(conn)
                return n
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt == 1 and "full" in str(exc) and self._release_reserve():
                    self._checkpoint(conn)
                    continue
                raise
        return 0  # not reached

    def relieve(self, conn: sqlite3.Connection, budget_s: float = 2.0) -> bool:
        """The writer met a full disk (``SQLITE_FULL``, or the cap of :meth:`guard`): on the writer's own
        connection, outside its failed batch, bring the WAL back to its start and, when the file has
        few free pages left, prune in small chunks until a quarter of the file is free again (the
        same 75 % as :meth:`run`, here of what the disk holds), for ``budget_s`` at most. Under the
        budget only what is safe to lose goes (summarised raw data, delivered messages); undelivered
        summaries only over it. Returns True when rows were freed (the writer then retries at once)."""
        self.relief_runs += 1
        frames = self._checkpoint(conn)
        if frames is None and self._release_reserve():
            frames = self._checkpoint(conn)
        # the WAL held frames and starts again from its beginning; a second look with no commit in
        # between sees the same frames (a write that failed before writing any): not news, so the
        # writer splits or waits instead of retrying at once again and again
        mark = (frames, self.writer.batches)
        restarted = bool(frames) and mark != self._last_restart
        self._last_restart = mark
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        want = int(pages * (1 - LOW_WATER))
        if free >= max(1, int(pages * (1 - HIGH_WATER))):
            # the file has room: a WAL that starts again may be all the batch needed; if not, the
            # batch is too big for the WAL and the writer splits it
            return restarted
        over = db_used_bytes(conn) > self.page_budget * HIGH_WATER
        chunk = self.safe_chunk
        removed: dict[str, int] = {}
        deadline = time.monotonic() + budget_s
        n = 0
        for step in self._steps():
            if step.order >= 90 and not over:
                break
            n = 0
            while free < want and time.monotonic() < deadline:
                try:
                    n = self._prune_chunk(conn, step, chunk)
                except sqlite3.Error as exc:
                    self.last_error = f"pruning {step.name} on a full disk failed: {exc}"
                    log.warning(self.last_error)
                    n = -1
                if n > 0:
                    removed[step.name] = removed.get(step.name, 0) + n
                    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                if n < chunk:
                    break
            if n < 0 or free >= want or time.monotonic() >= deadline:
                break
        if removed:
            self.relief_prunes += 1
            self.last = {"relief": True, "removed": removed, "budget": self.budget}
            log.warning(
                "disk full: pruned %s to make room (%d of %d pages free)",
                ", ".join(f"{n} {name}" for name, n in removed.items()),
                free,
                pages,
            )
        return bool(removed) or restarted

    def run(self) -> dict[str, Any]:
        """Prune from 90 % of the budget down to 75 % (or until nothing is left to prune). Returns rows
        removed per step."""
        used = self.used()
        report: dict[str, Any] = {"used_before": used, "budget": self.budget, "removed": {}}
        limit = self.page_budget
        cap = self.cap_pages
        if cap is not None:  # a nearly full disk: what the file may hold now, see guard()
            limit = min(limit, cap * self._page_size)
            report["disk_limit"] = limit
        if used <= limit * HIGH_WATER:
            return report
        self.runs += 1
        target = int(limit * LOW_WATER)
        chunk = self.safe_chunk
        steps = self._steps()
        if used <= self.page_budget * HIGH_WATER:  # under the budget: undelivered summaries stay
            steps = [s for s in steps if s.order < 90]
        log.info(
            "database uses %.2f MB, %.0f %% of %s of %.1f MB: pruning",
            used / 2**20,
            100 * used / limit,
            "its budget" if limit == self.page_budget else "what the nearly full disk leaves it",
            limit / 2**20,
        )
        for step in steps:
            while used > target:
                box: dict[str, int] = {}

                def fn(conn: sqlite3.Connection, step: PruneStep = step, box: dict[str, int] = box) -> None:
                    box["n"] = step.fn(conn, chunk)

                if not self.writer.call(outbox.full_safe(fn), kind="retention", timeout_s=30.0):
                    self.last_error = (
                        f"pruning {step.name} did not complete (writer: {self.writer.last_error})"
                    )
                    log.warning(self.last_error)
                    report["used_after"] = self.used()
                    self.last = report
                    return report
                n = box.get("n", 0)
                if n:
                    report["removed"][step.name] = report["removed"].get(step.name, 0) + n
                used = self.used()
                if n < chunk:
                    break
            if used <= target:
                break
        report["used_after"] = used
        if report["removed"]:
            log.info("pruned %s; database now uses %.2f MB", report["removed"], used / 2**20)
        if used <= limit:
            self.last_error = None
        else:
            self.last_error = f"still over budget after pruning everything allowed ({used / 2**20:.1f} MB)"
            log.error(self.last_error)
        self.last = report
        return report
