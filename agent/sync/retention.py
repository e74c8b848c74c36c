"""Keeping the database inside its size budget (``storage.max_db_mb``).

The budget counts the pages in use (freed pages are reused by SQLite, so the file stops growing
at about the budget). Over budget, prune steps run in order, each in chunks through the single
writer, until the database is back under 90 % of the budget:

1. raw detections and classifications, oldest first (only those already summarised);
2. delivered (or rejected) outbox messages, oldest first;
3. undelivered summaries, oldest first: recorded in ``outbox_gaps`` with the reason, and a ``gap``
   event is queued so the hub sees the gap and why.

Every step counts what it removed (``sync_state.pruned_*``, reported in health). Other parts of the
agent add their own raw tables with :func:`register_prune_step` (an order between 1 and 3).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.health import db_used_bytes
from agent.sync.topics import Topics

log = logging.getLogger(__name__)

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
        writer: deletes run through it (``submit_fn(block=True)`` then ``flush``).
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

    def used(self) -> int:
        conn = self.reader()
        try:
            return db_used_bytes(conn)
        finally:
            conn.close()

    def run(self) -> dict[str, Any]:
        """Prune until under 90 % of the budget (or nothing is left to prune). Returns rows removed per step."""
        used = self.used()
        report: dict[str, Any] = {"used_before": used, "budget": self.budget, "removed": {}}
        if used <= self.budget:
            return report
        self.runs += 1
        target = int(self.budget * 0.9)
        steps = prune_steps() + [PruneStep(90, "undelivered summaries", self._undelivered)]
        log.warning(
            "database uses %.1f MB, over its budget of %.1f MB: pruning", used / 2**20, self.budget / 2**20
        )
        for step in steps:
            while used > target:
                box: dict[str, int] = {}

                def fn(conn: sqlite3.Connection, step: PruneStep = step, box: dict[str, int] = box) -> None:
                    box["n"] = step.fn(conn, self.chunk)

                if not outbox.submit(
                    self.writer, fn, kind="retention", block=True, timeout_s=10.0
                ) or not self.writer.flush(30.0):
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
            log.warning("pruned %s; database now uses %.1f MB", report["removed"], used / 2**20)
        if used > self.budget:
            self.last_error = f"still over budget after pruning everything allowed ({used / 2**20:.1f} MB)"
            log.error(self.last_error)
        self.last = report
        return report
