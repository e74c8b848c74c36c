"""The outbox: outgoing messages kept in SQLite until the broker acknowledges them.

A row is written in the same transaction as whatever produced it (a summary and its window's
bookkeeping), so a crash can neither lose nor double it. Each row gets the next per-device ``seq``
(one more than the last, never reused, kept in ``sync_state`` so it survives restarts and pruning).
A row is ``pending`` until its PUBACK arrives, then ``delivered`` (or ``rejected`` when the broker
refuses it with an MQTT 5 error reason). Every function here takes a connection and runs inside
the caller's transaction: writes go through the single writer (``Writer.submit_fn``).

Rows that are deleted before delivery (storage budget) are recorded in ``outbox_gaps`` with a
reason, and a ``gap`` event is queued, so the hub sees the gap and why.

The message text lives in ``outbox_payload`` (schema v2), beside the small ``outbox`` row that holds
its state: marking a row delivered rewrites a few dozen bytes, not the whole message (a backlog
drains thousands a second and every mark is a database write). A trigger removes the text with its
row, whatever deletes it.

This module holds the writes (enqueue, mark, requeue, prune); the tables are declared in
:mod:`agent.sync.outbox_schema` and the queries live in :mod:`agent.sync.outbox_read`. Both are
re-exported here: callers use ``outbox.TABLES``, ``outbox.fetch_pending``, ``outbox.stats``, ...
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.sync.outbox_read import SendRow as SendRow
from agent.sync.outbox_read import fetch_pending as fetch_pending
from agent.sync.outbox_read import fetch_pending_rows as fetch_pending_rows
from agent.sync.outbox_read import fetch_range as fetch_range
from agent.sync.outbox_read import list_rows as list_rows
from agent.sync.outbox_read import missing_in_range as missing_in_range
from agent.sync.outbox_read import state_value as state_value
from agent.sync.outbox_read import stats as stats
from agent.sync.outbox_schema import TABLES as TABLES
from agent.sync.topics import SCHEMA_VERSION, SCHEMAS
from agent.timefmt import iso_utc

#: priority classes (lower goes first in live-first delivery)
LIVE = 0  # health, events
SUMMARY = 1  # summaries (a backlog of them is the "backfill")


# -- writing (inside the writer's transaction) -----------------------------------------------------


def full_safe(fn: Callable[[sqlite3.Connection], Any]) -> Callable[[sqlite3.Connection], Any]:
    """Wrap a ``Writer.submit_fn`` function so SQLITE_FULL is retried, not lost.

    SQLite rolls the whole transaction back on SQLITE_FULL; the writer (agent/store/writer.py) then
    fails on ``ROLLBACK TO op`` ("no such savepoint") and counts the batch as lost. Until the writer
    checks ``conn.in_transaction`` first, this re-opens the transaction and the writer's savepoint
    so the writer sees the "full" error, rolls back and retries the batch when space returns.
    """

    def run(conn: sqlite3.Connection) -> Any:
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if not conn.in_transaction and ("full" in str(exc) or "disk I/O" in str(exc)):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("SAVEPOINT op")
            raise

    return run


def submit(
    writer: Any,
    fn: Callable[[sqlite3.Connection], Any],
    *,
    kind: str,
    block: bool = False,
    timeout_s: float = 5.0,
    urgent: bool = False,
) -> bool:
    """``writer.submit_fn`` with :func:`full_safe`."""
    return writer.submit_fn(full_safe(fn), kind=kind, block=block, timeout_s=timeout_s, urgent=urgent)


def enqueue(
    conn: sqlite3.Connection,
    topic: str,
    kind: str,
    body: dict[str, Any],
    *,
    priority: int,
    retain: bool = False,
    qos: int = 1,
    now: float | None = None,
) -> int:
    """Add a message; returns its ``seq``. ``body`` gets ``schema`` (if absent) and ``seq`` added."""
    seq = conn.execute(
        "UPDATE sync_state SET value = value + 1 WHERE key = 'last_seq' RETURNING value"
    ).fetchone()[0]
    doc = {
        "schema": SCHEMAS[kind],
        "schema_version": SCHEMA_VERSION,
        "seq": seq,
        **{k: v for k, v in body.items() if k not in ("seq", "session")},
    }
    if "schema" in body:
        doc["schema"] = body["schema"]
    payload = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    conn.execute(
        "INSERT INTO outbox (seq, topic, kind, qos, retain, priority, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, topic, kind, qos, int(retain), priority, iso_utc(now if now is not None else time.time())),
    )
    conn.execute("INSERT INTO outbox_payload (seq, payload) VALUES (?, ?)", (seq, payload))
    return seq


def mark(conn: sqlite3.Connection, seqs: Iterable[int], state: str, now: float | None = None) -> int:
    """Mark pending rows ``delivered`` or ``rejected``. Returns rows changed."""
    seqs = list(seqs)
    ts = iso_utc(now if now is not None else time.time())
    n = 0
    for i in range(0, len(seqs), 500):
        chunk = seqs[i : i + 500]
        # "+state": find the rows by seq (primary key), not through the outbox_state index, which SQLite
        # would otherwise pick and walk across every pending row for each chunk (~1.4x slower on a backlog)
        cur = conn.execute(
            f"UPDATE outbox SET state = ?, delivered = ? WHERE +state = 'pending' AND seq IN ({','.join('?' * len(chunk))})",
            (state, ts, *chunk),
        )
        n += cur.rowcount
    return n


def requeue(conn: sqlite3.Connection, from_seq: int, to_seq: int) -> int:
    """Set delivered/rejected rows in ``[from_seq, to_seq]`` back to pending (a technician's replay)."""
    return conn.execute(
        "UPDATE outbox SET state = 'pending', delivered = NULL WHERE seq BETWEEN ? AND ? AND state != 'pending'",
        (from_seq, to_seq),
    ).rowcount


def next_session(conn: sqlite3.Connection) -> int:
    """Increment and return the connection-session id (Sparkplug's bdSeq, but never wrapping)."""
    return conn.execute(
        "UPDATE sync_state SET value = value + 1 WHERE key = 'session' RETURNING value"
    ).fetchone()[0]


def add_counter(conn: sqlite3.Connection, key: str, n: int) -> None:
    conn.execute(
        "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
        (key, n),
    )


def prune_delivered(conn: sqlite3.Connection, limit: int) -> int:
    """Delete the oldest delivered (or rejected) messages that every outbox sink has too (at or below
    each sink's cursor, agent/sync/sink.py). Returns how many."""
    below = "coalesce((SELECT MIN(CAST(value AS INTEGER)) FROM sink_cursor WHERE what = 'outbox'), 1 << 62)"
    sql = f"SELECT seq FROM outbox WHERE state != 'pending' AND seq <= {below} ORDER BY seq LIMIT ?"
    n = conn.execute(f"DELETE FROM outbox WHERE seq IN ({sql})", (limit,)).rowcount
    add_counter(conn, "pruned_delivered", n)
    return n


def prune_undelivered(
    conn: sqlite3.Connection, limit: int, reason: str, topic_event: str, device: dict[str, str]
) -> list[tuple[int, int]]:
    """Delete the oldest undelivered summaries, record the gap(s) and queue a ``gap`` event for each.

    Returns the pruned ``(from_seq, to_seq)`` ranges.
    """
    seqs = [
        r[0]
        for r in conn.execute(
            "SELECT seq FROM outbox WHERE state = 'pending' AND kind = 'summary' ORDER BY seq LIMIT ?",
            (limit,),
        )
    ]
    if not seqs:
        return []
    ranges = contiguous(seqs)
    now = time.time()
    for a, b in ranges:
        n = conn.execute(
            "DELETE FROM outbox WHERE seq BETWEEN ? AND ? AND state = 'pending' AND kind = 'summary'", (a, b)
        ).rowcount
        conn.execute(
            "INSERT INTO outbox_gaps (from_seq, to_seq, count, kind, reason, ts) VALUES (?, ?, ?, 'summary', ?, ?)",
            (a, b, n, reason, iso_utc(now)),
        )
        enqueue(
            conn,
            topic_event,
            "event",
            {
                **device,
                "ts": iso_utc(now),
                "type": "gap",
                "data": {"from_seq": a, "to_seq": b, "count": n, "kind": "summary", "reason": reason},
            },
            priority=LIVE,
            now=now,
        )
    add_counter(conn, "pruned_undelivered", len(seqs))
    return ranges


def contiguous(seqs: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7, 8] -> [(1, 3), (7, 8)] (input sorted)."""
    out: list[tuple[int, int]] = []
    for s in seqs:
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
