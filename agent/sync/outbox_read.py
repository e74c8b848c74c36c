"""Reading the outbox (any connection, no writes): pending rows for the publisher, stored ranges
for a replay, why seqs are missing, counts and listings for the CLI, health and the local API.

The publisher's read (:func:`fetch_pending`) is the drain's hot path: a batch of a thousand rows
comes back in one SQLite step (see the note above it). Re-exported by :mod:`agent.sync.outbox`,
which callers use.
"""

from __future__ import annotations

import sqlite3
from typing import Any

#: a row as the publisher reads it: (seq, topic, payload, qos, retain, priority); topic and payload
#: are str, or bytes on a connection with ``text_factory = bytes``; payload is None only if its text
#: was removed behind the agent's back. Plain tuples: thousands a second are read during a drain.
SendRow = tuple[int, Any, Any, int, int, int]

_COLS = "o.seq, o.topic, p.payload, o.qos, o.retain, o.priority"
_FROM = (
    "outbox o LEFT JOIN outbox_payload p ON p.seq = o.seq"  # LEFT: a row whose text is missing still shows
)

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
    where: list[str] = []
    args: list[str | int] = []
    if state:
        where.append("state = ?")
        args.append(state)
    if kind:
        where.append("kind = ?")
        args.append(kind)
    if from_seq is not None:
        where.append("o.seq >= ?")
        args.append(from_seq)
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
