"""Periodic summaries: one per window, built from every registered section, written with its bookkeeping.

Windows are ``interval_s`` long and aligned to the UTC clock (``[k*I, (k+1)*I)``). A window is
summarised once it has ended and the writes submitted before its end are committed. Its summary
goes into the outbox in the same transaction as its ``summary_windows`` row, and that row's primary
key is the window start, so a crash can neither lose a window (it is redone as ``catchup`` at the
next start) nor write it twice.

Sections that send rows by change (bins, see :mod:`agent.sections`) have their high-water marks
computed on the summary's snapshot and stored in ``sync_state`` in that same transaction: what a
summary covers and the summary itself commit together, so a row committed at any time goes out in
the first summary built after its change (a restart resumes at the marks; a failed section keeps its
mark; a summary whose commit is still pending lets the next one send the same rows again, same rev).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from agent import __version__
from agent import host as _health
from agent.sections import summary_cursors, summary_mark, summary_sections
from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.topics import Topics
from agent.timefmt import iso_utc

log = logging.getLogger(__name__)


def parse_iso(s: str) -> float:
    import datetime as dt

    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def build_sections(conn: sqlite3.Connection, start: str, end: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Call every registered section for ``[start, end)``. A failing section is reported in the
    second dict (name -> error) and never takes the summary down."""
    sections: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, fn in sorted(summary_sections().items()):
        try:
            value = fn(conn, start, end)
        except Exception as exc:  # one part's bug must not lose the others' data
            log.exception("summary section %s failed for window %s", name, start)
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        if value is not None:
            sections[name] = value
    return sections, errors


class SummaryBuilder:
    """Writes the summaries of windows that have ended.

    Args:
        interval_s: window length.
        writer: the database writer; each summary is one ``submit_fn(block=True)`` transaction.
        reader: a function returning a read connection (sections run on it).
        topics: the device's topics.
        catchup_windows: most missed windows summarised at start.
        flush_timeout_s: how long to wait for the window's pending writes.
        clock: wall clock (seconds since the epoch).
        small_counts: ``privacy.small_counts`` (a ``SmallCountConfig``): the protection applied to the
            published counts, declared in the summary's ``privacy`` (``None``: true counts, declared off).
    """

    def __init__(
        self,
        *,
        interval_s: float,
        writer: Writer,
        reader: Callable[[], sqlite3.Connection],
        topics: Topics,
        catchup_windows: int = 60,
        flush_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        small_counts: Any = None,
    ) -> None:
        self.interval = float(interval_s)
        self.writer = writer
        self.reader = reader
        self.topics = topics
        self.catchup_windows = catchup_windows
        self.flush_timeout_s = flush_timeout_s
        self.clock = clock
        self.small_counts = small_counts
        self.started = clock()
        self.next_start: float | None = None
        self.written = 0
        self.duplicates = 0
        self.last_error: str | None = None
        self._marks: dict[str, int] = {}  # the marks of the last body built

    def _aligned(self, t: float) -> float:
        return math.floor(t / self.interval) * self.interval

    def _init_next(self, conn: sqlite3.Connection, now: float) -> float:
        row = conn.execute("SELECT end FROM summary_windows ORDER BY start DESC LIMIT 1").fetchone()
        current = self._aligned(now)
        if row is None:
            return current
        nxt = parse_iso(row[0])
        if nxt > now + self.interval:  # the clock went back (e.g. NTP after a boot with a stale clock)
            log.warning(
                "last summary window ends at %s, after now: the clock went back; restarting windows at %s",
                row[0],
                iso_utc(current),
            )
            return current
        return max(nxt, current - self.catchup_windows * self.interval)

    def next_due(self) -> float:
        """Wall-clock time at which the next window ends (call after :meth:`run_due` at least once)."""
        if self.next_start is None:
            return self.clock()
        return self.next_start + self.interval

    def run_due(self) -> list[int]:
        """Summarise every window that has ended. Returns the seqs written."""
        now = self.clock()
        seqs: list[int] = []
        conn = self.reader()
        try:
            if self.next_start is None:
                self.next_start = self._init_next(conn, now)
            elif self.next_start > now + self.interval:
                self.next_start = self._aligned(now)
            while self.next_start + self.interval <= now:
                start, end = self.next_start, self.next_start + self.interval
                self.writer.flush(self.flush_timeout_s)
                seq = self._write_window(conn, start, end, catchup=end <= self.started)
                if seq is False:
                    break  # the writer refused (full): try again at the next tick
                self.next_start = end
                if seq is not None:
                    seqs.append(seq)
                now = self.clock()
        finally:
            conn.close()
        return seqs

    def body(self, conn: sqlite3.Connection, start: float, end: float, *, catchup: bool) -> dict[str, Any]:
        s, e = iso_utc(start), iso_utc(end)
        conn.execute("BEGIN")  # one snapshot for every section and every mark
        try:
            sections, errors = build_sections(conn, s, e)
            self._marks = {}
            for key, (section, cursor) in sorted(summary_cursors().items()):
                if section in errors:
                    continue  # what it failed to send stays after its mark
                try:
                    self._marks[key] = cursor(conn, summary_mark(conn, key))
                except Exception:  # the rows are sent again next time: never skipped
                    log.exception("summary cursor %s failed for window %s", key, s)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
        from agent.privacy.smallcount import protect_summary

        # what leaves the unit: small counts protected (the database keeps the true counts)
        sections, small = protect_summary(sections, self.small_counts)
        doc: dict[str, Any] = {
            "device": self.topics.device,
            "site": self.topics.site,
            "ts": iso_utc(self.clock()),
            "window": {"start": s, "end": e, "seconds": round(end - start, 3)},
            "clock_synced": _health.clock_synced(),
            "catchup": catchup,
            "agent_version": __version__,
            "sections": sections,
            "privacy": {"small_counts": small},
        }
        if errors:
            doc["errors"] = errors
        return doc

    def _write_window(
        self, conn: sqlite3.Connection, start: float, end: float, *, catchup: bool
    ) -> int | None | bool:
        body = self.body(conn, start, end, catchup=catchup)
        marks = dict(self._marks)
        s, e = body["window"]["start"], body["window"]["end"]
        topic = self.topics.kind("summary")
        result: dict[str, Any] = {}

        def write(c: sqlite3.Connection) -> None:
            result.clear()
            cur = c.execute(
                "INSERT OR IGNORE INTO summary_windows (start, end, seq, written) VALUES (?, ?, 0, ?)",
                (s, e, iso_utc(time.time())),
            )
            if cur.rowcount == 0:
                result["duplicate"] = True
                return
            seq = outbox.enqueue(c, topic, "summary", body, priority=outbox.SUMMARY)
            c.execute("UPDATE summary_windows SET seq = ? WHERE start = ?", (seq, s))
            c.executemany(  # what this summary covers commits with it
                "INSERT INTO sync_state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                sorted(marks.items()),
            )
            result["seq"] = seq

        # ahead of the writer's queue (Writer.call): a queue full of detections must not hold a summary
        # back, nor the retention that may prune only what a summary covers
        if not self.writer.call(outbox.full_safe(write), kind="summary", timeout_s=self.flush_timeout_s):
            # still queued (e.g. disk full, being retried): it will commit; the bookkeeping prevents a double
            self.last_error = f"summary of window {s} not committed yet (writer: {self.writer.last_error})"
            log.warning(self.last_error)
            return None
        if result.get("duplicate"):
            self.duplicates += 1
            log.info("summary window %s was already written; not doubled", s)
            return None
        if "seq" not in result:
            self.last_error = f"summary of window {s} failed: {self.writer.last_error}"
            log.error(self.last_error)
            return None
        self.written += 1
        return int(result["seq"])
