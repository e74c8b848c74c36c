"""Keeping the database inside its size budget (``storage.max_db_mb``).

The budget covers the database file and its write-ahead log. The WAL gets a sixteenth of it (it is
checkpointed and truncated in small steps, see :func:`agent.store.db.wal_limits`); the rest is for
the pages in use (freed pages are reused by SQLite, so the file stops growing at about that).
Pruning starts *before* that is reached, at 90 % of it (:data:`HIGH_WATER`), and goes on down to
75 % (:data:`LOW_WATER`). It runs on its own thread
(``sync-retention``, a look every 0.25 s: two PRAGMAs and a stat), never behind the summaries, and the prune steps run in order,
each in chunks through the single writer:

1. raw detections and classifications, oldest first (only those already summarised);
2. delivered (or rejected) outbox messages, oldest first;
3. undelivered summaries, oldest first: recorded in ``outbox_gaps`` with the reason, and a ``gap``
   event is queued so the hub sees the gap and why.

When the disk itself is full (``SQLITE_FULL``, whatever filled it) the writer cannot commit, so a
prune queued behind its batch could never run: the writer then calls :meth:`Retention.relieve` on
its own connection, between two tries of the batch, which deletes a chunk right there and the
retried batch lands in the freed pages. A delete needs a few WAL pages too, so a small reserve file
(``<database>-reserve``, a 32nd of the budget, 64 KiB to 1 MiB) is kept beside the database while
there is room: on a full disk it is removed first, which gives that delete its room, and it is
written again once the disk has twice its size free.

Every step counts what it removed (``sync_state.pruned_*``, reported in health). Other parts of the
agent add their own raw tables with :func:`register_prune_step` (an order between 1 and 3).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.store.db import wal_limits
from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.health import db_used_bytes
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
    """Oldest detections and classifications already covered by a written summary."""
    return prune_summarised(
        conn, limit, [("detections", "ts"), ("classifications", "ts")], "pruned_detections"
    )


register_prune_step(10, "detections", prune_raw_detections)
register_prune_step(50, "delivered messages", outbox.prune_delivered)
# step 90 (undelivered summaries) needs the device's topics: added by Retention itself


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
        self.reserve_bytes = max(64 * 1024, min(2**20, self.budget // 32))
        self.reserve: Path | None = None  # set by keep_reserve() once the database's path is known
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

    def relieve(self, conn: sqlite3.Connection) -> bool:
        """The writer met a full disk: delete one chunk of the first step that has something to delete,
        on the writer's own connection (outside its failed batch). Under the budget only what is safe
        to lose goes (summarised raw data, delivered messages); undelivered summaries only over it.
        Returns True when rows were freed (the writer then retries at once)."""
        self.relief_runs += 1
        over = db_used_bytes(conn) > self.page_budget * HIGH_WATER
        for step in self._steps():
            if step.order >= 90 and not over:
                break
            for attempt in (1, 2):
                try:
                    # WAL frames back into the database, so the next writes reuse the WAL from its start
                    # instead of growing it on a disk that has no room
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                    conn.execute("BEGIN IMMEDIATE")
                    n = step.fn(conn, min(self.chunk, 200))  # a small delete: a few WAL pages
                    conn.execute("COMMIT")
                    break
                except sqlite3.Error as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if attempt == 1 and "full" in str(exc) and self._release_reserve():
                        continue
                    self.last_error = f"pruning {step.name} on a full disk failed: {exc}"
                    log.warning(self.last_error)
                    return False
            if n:
                try:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                except sqlite3.Error:
                    pass
                self.last = {"relief": True, "removed": {step.name: n}, "budget": self.budget}
                log.warning("disk full: pruned %d %s to make room", n, step.name)
                return True
        return False

    def run(self) -> dict[str, Any]:
        """Prune from 90 % of the budget down to 75 % (or until nothing is left to prune). Returns rows
        removed per step."""
        used = self.used()
        report: dict[str, Any] = {"used_before": used, "budget": self.budget, "removed": {}}
        if used <= self.page_budget * HIGH_WATER:
            return report
        self.runs += 1
        target = int(self.page_budget * LOW_WATER)
        steps = self._steps()
        log.info(
            "database uses %.2f MB, %.0f %% of its budget of %.1f MB: pruning",
            used / 2**20,
            100 * used / self.budget,
            self.budget / 2**20,
        )
        for step in steps:
            while used > target:
                box: dict[str, int] = {}

                def fn(conn: sqlite3.Connection, step: PruneStep = step, box: dict[str, int] = box) -> None:
                    box["n"] = step.fn(conn, self.chunk)

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
                if n < self.chunk:
                    break
            if used <= target:
                break
        report["used_after"] = used
        if report["removed"]:
            log.info("pruned %s; database now uses %.2f MB", report["removed"], used / 2**20)
        if used <= self.page_budget:
            self.last_error = None
        else:
            self.last_error = f"still over budget after pruning everything allowed ({used / 2**20:.1f} MB)"
            log.error(self.last_error)
        self.last = report
        return report
