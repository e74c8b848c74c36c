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
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.store.db import Migration
from agent.sync.topics import SCHEMA_VERSION, SCHEMAS
from agent.timefmt import iso_utc

#: priority classes (lower goes first in live-first delivery)
LIVE = 0  # health, events
SUMMARY = 1  # summaries (a backlog of them is the "backfill")

#: (component, migrations): the tables this module defines, declared by its part (``agent.parts``)
TABLES: tuple[str, list[Migration]] = (
    "sync",
    [
        Migration(
            1,
            "outbox, sync_state, summary_windows, outbox_gaps",
            """
            CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY,         -- per-device message sequence, +1 each, never reused
                topic TEXT NOT NULL,
                kind TEXT NOT NULL,              -- summary | health | event
                payload TEXT NOT NULL,           -- JSON; the session id is added when published
                qos INTEGER NOT NULL DEFAULT 1,
                retain INTEGER NOT NULL DEFAULT 0,
                priority INTEGER NOT NULL DEFAULT 1,
                created TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
                delivered TEXT
            );
            CREATE INDEX outbox_state ON outbox (state, priority, seq);
            CREATE TABLE sync_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO sync_state (key, value) VALUES ('last_seq', 0), ('session', 0),
                ('pruned_detections', 0), ('pruned_delivered', 0), ('pruned_undelivered', 0), ('pruned_other', 0);
            CREATE TABLE summary_windows (
                start TEXT PRIMARY KEY,          -- window start, UTC ISO-8601
                end TEXT NOT NULL,
                seq INTEGER NOT NULL,            -- the outbox row of its summary
                written TEXT NOT NULL
            );
            CREATE TABLE outbox_gaps (
                id INTEGER PRIMARY KEY,
                from_seq INTEGER NOT NULL,
                to_seq INTEGER NOT NULL,
                count INTEGER NOT NULL,
                kind TEXT NOT NULL,
                reason TEXT NOT NULL,
                ts TEXT NOT NULL
            );
            CREATE INDEX outbox_gaps_range ON outbox_gaps (from_seq, to_seq);
            """,
        ),
        Migration(
            2,
            "message text in outbox_payload: a delivery mark rewrites the small state row only",
            """
            CREATE TABLE outbox_payload (
                seq INTEGER PRIMARY KEY,         -- the outbox row's seq
                payload TEXT NOT NULL            -- JSON; the session id is added when published
            );
            INSERT INTO outbox_payload (seq, payload) SELECT seq, payload FROM outbox;
            CREATE TABLE outbox_v2 (
                seq INTEGER PRIMARY KEY,         -- per-device message sequence, +1 each, never reused
                topic TEXT NOT NULL,
                kind TEXT NOT NULL,              -- summary | health | event
                qos INTEGER NOT NULL DEFAULT 1,
                retain INTEGER NOT NULL DEFAULT 0,
                priority INTEGER NOT NULL DEFAULT 1,
                created TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
                delivered TEXT
            );
            INSERT INTO outbox_v2 (seq, topic, kind, qos, retain, priority, created, state, delivered)
                SELECT seq, topic, kind, qos, retain, priority, created, state, delivered FROM outbox;
            DROP TABLE outbox;
            ALTER TABLE outbox_v2 RENAME TO outbox;
            CREATE INDEX outbox_state ON outbox (state, priority, seq);
            CREATE TRIGGER outbox_payload_gc AFTER DELETE ON outbox BEGIN
                DELETE FROM outbox_payload WHERE seq = old.seq;
            END;
            """,
        ),
        Migration(
            3,
            "sink_queue: messages for other sinks (NGSI-LD) with their own delivery state; MQTT rows untouched",
            """
            CREATE TABLE sink_queue (
                id INTEGER PRIMARY KEY,
                sink TEXT NOT NULL,              -- the sink's name, e.g. ngsi-ld
                kind TEXT NOT NULL,              -- what it holds (the NGSI-LD entity type)
                key TEXT NOT NULL,               -- idempotency key (the entity id)
                created TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                delivered TEXT,
                payload TEXT NOT NULL            -- JSON, exactly as sent
            );
            CREATE INDEX sink_queue_state ON sink_queue (sink, state, id);
            CREATE TABLE sink_cursor (
                sink TEXT NOT NULL,
                what TEXT NOT NULL,              -- e.g. TrafficFlowObserved: produced up to this time
                value TEXT NOT NULL,
                PRIMARY KEY (sink, what)
            );
            """,
        ),
    ],
)


#: a row as the publisher reads it: (seq, topic, payload, qos, retain, priority); topic and payload
#: are str, or bytes on a connection with ``text_factory = bytes``; payload is None only if its text
#: was removed behind the agent's back. Plain tuples: thousands a second are read during a drain.
SendRow = tuple[int, Any, Any, int, int, int]

_COLS = "o.seq, o.topic, p.payload, o.qos, o.retain, o.priority"
_FROM = (
    "outbox o LEFT JOIN outbox_payload p ON p.seq = o.seq"  # LEFT: a row whose text is missing still shows
)


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


# -- reading (any connection) ----------------------------------------------------------------------

# A backlog is read a thousand rows at a time while paho's thread is busy sending. Python's sqlite3
# releases the GIL for every row it steps through, and during a drain paho's thread wants the GIL
# back each time: a context switch per row for both threads. So a batch comes back as one row of
# aggregates, which SQLite steps in lockstep over the same rows (element i of every column belongs to
# the same message): seqs joined by commas, qos/retain/priority as three digits a row, topics and payloads
# joined by the ASCII record separator (JSON text never holds it raw: json.dumps escapes control
# characters). Splitting them is C work. Anything unexpected (a separator inside a topic or payload,
# a missing payload, a value of two digits, rows out of order) makes a length or order check fail,
# and the batch is read again row by row.
_RS = b"\x1e"
_DIGITS = bytes.maketrans(b"0123456789", bytes(range(10)))
_PACKED = (
    "SELECT count(*), count(payload), group_concat(seq), group_concat(qos || retain || priority, ''),"
    " group_concat(topic, char(30)), group_concat(payload, char(30)) FROM"
    " (SELECT o.seq, o.qos, o.retain, o.priority, o.topic, p.payload FROM "
    + _FROM
    + " WHERE o.state = 'pending' {pri} AND o.seq > ? ORDER BY o.seq LIMIT ?)"
)


def fetch_pending(
    conn: sqlite3.Connection, after_seq: int, limit: int, priority: int | None = None
) -> list[SendRow]:
    """Pending rows with ``seq > after_seq`` in seq order (of one priority class, or all).

    On a connection with ``text_factory = bytes`` (the publisher's) the batch is read in one step
    (see above); otherwise, and whenever that read does not check out, row by row."""
    if conn.text_factory is bytes:
        pri, args = (
            ("", (after_seq, limit))
            if priority is None
            else ("AND o.priority = ?", (priority, after_seq, limit))
        )
        n, n_payload, seqs, flags, topics, payloads = conn.execute(_PACKED.format(pri=pri), args).fetchone()
        if not n:
            return []
        if n_payload == n and len(flags) == 3 * n:
            seq_l = list(map(int, seqs.split(b",")))
            f = flags.translate(_DIGITS)  # qos, retain, priority: one digit each, three per row
            tl, pl = topics.split(_RS), payloads.split(_RS)
            if len(seq_l) == len(tl) == len(pl) == n and seq_l == sorted(seq_l):
                return list(zip(seq_l, tl, pl, f[0::3], f[1::3], f[2::3]))
    return fetch_pending_rows(conn, after_seq, limit, priority)


def fetch_pending_rows(
    conn: sqlite3.Connection, after_seq: int, limit: int, priority: int | None = None
) -> list[SendRow]:
    """:func:`fetch_pending` row by row (the plain query; what the packed read falls back to)."""
    if priority is None:
        q = conn.execute(
            f"SELECT {_COLS} FROM {_FROM} WHERE o.state = 'pending' AND o.seq > ? ORDER BY o.seq LIMIT ?",
            (after_seq, limit),
        )
    else:
        q = conn.execute(
            f"SELECT {_COLS} FROM {_FROM} WHERE o.state = 'pending' AND o.priority = ? AND o.seq > ? ORDER BY o.seq LIMIT ?",
            (priority, after_seq, limit),
        )
    return q.fetchall()


def fetch_range(conn: sqlite3.Connection, from_seq: int, to_seq: int, limit: int = 1000) -> list[SendRow]:
    """Stored rows (any state) in ``[from_seq, to_seq]``."""
    return conn.execute(
        f"SELECT {_COLS} FROM {_FROM} WHERE o.seq BETWEEN ? AND ? ORDER BY o.seq LIMIT ?",
        (from_seq, to_seq, limit),
    ).fetchall()


def state_value(conn: sqlite3.Connection, key: str) -> int:
    r = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return int(r[0]) if r else 0


def missing_in_range(conn: sqlite3.Connection, from_seq: int, to_seq: int) -> list[dict[str, Any]]:
    """Why seqs of a range are not in the outbox: pruned before delivery (with the reason), deleted
    after delivery, or not assigned yet. Ranges, in seq order."""
    last = state_value(conn, "last_seq")
    present = [
        r[0]
        for r in conn.execute(
            "SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq", (from_seq, to_seq)
        )
    ]
    gaps = conn.execute(
        "SELECT from_seq, to_seq, reason FROM outbox_gaps WHERE to_seq >= ? AND from_seq <= ? ORDER BY from_seq",
        (from_seq, to_seq),
    ).fetchall()
    out: list[dict[str, Any]] = []
    have = set(present)
    top = min(to_seq, last, from_seq + 200_000)
    for s in range(from_seq, top + 1):
        if s in have:
            continue
        reason = next(
            (f"pruned before delivery: {gr}" for ga, gb, gr in gaps if ga <= s <= gb),
            "deleted after delivery (retention)",
        )
        if out and out[-1]["to_seq"] == s - 1 and out[-1]["reason"] == reason:
            out[-1]["to_seq"] = s
        else:
            out.append({"from_seq": s, "to_seq": s, "reason": reason})
    if to_seq > last:
        out.append({"from_seq": max(from_seq, last + 1), "to_seq": to_seq, "reason": "not assigned yet"})
    return out


def stats(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts for `edge-agent outbox status`, health messages and the local API."""
    by_state: dict[str, int] = {}
    pending_by_kind: dict[str, int] = {}
    for state, kind, n in conn.execute("SELECT state, kind, COUNT(*) FROM outbox GROUP BY state, kind"):
        by_state[state] = by_state.get(state, 0) + n
        if state == "pending":
            pending_by_kind[kind] = n
    oldest = conn.execute("SELECT MIN(seq), MIN(created) FROM outbox WHERE state = 'pending'").fetchone()
    counters = dict(conn.execute("SELECT key, value FROM sync_state"))
    gaps = conn.execute("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM outbox_gaps").fetchone()
    return {
        "last_seq": counters.get("last_seq", 0),
        "session": counters.get("session", 0),
        "pending": by_state.get("pending", 0),
        "pending_by_kind": pending_by_kind,
        "delivered": by_state.get("delivered", 0),
        "rejected": by_state.get("rejected", 0),
        "oldest_pending_seq": oldest[0],
        "oldest_pending_created": oldest[1],
        "gaps": gaps[0],
        "pruned": {k[len("pruned_") :]: v for k, v in counters.items() if k.startswith("pruned_")},
        "pruned_undelivered_seqs": gaps[1],
    }


def list_rows(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    kind: str | None = None,
    from_seq: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    where, args = [], []
    if state:
        where.append("state = ?")
        args.append(state)  # noqa: E702
    if kind:
        where.append("kind = ?")
        args.append(kind)  # noqa: E702
    if from_seq is not None:
        where.append("o.seq >= ?")
        args.append(from_seq)  # noqa: E702
    sql = (
        "SELECT o.seq, kind, topic, priority, state, created, delivered, length(p.payload) FROM "
        + _FROM
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY o.seq "
        + ("ASC" if from_seq is not None else "DESC")
        + " LIMIT ?"
    )
    rows = conn.execute(sql, (*args, limit)).fetchall()
    keys = ("seq", "kind", "topic", "priority", "state", "created", "delivered", "bytes")
    return [dict(zip(keys, r)) for r in sorted(rows)]
