"""Read-only queries behind the API and the console commands (one read connection each call).

Each function takes a read connection and returns plain JSON-able data. A table that another part
of the agent owns may be missing from a database (that part not installed, or an older file): the
answer is then empty with a ``note`` saying so, never an error.
"""

from __future__ import annotations

import datetime as _dt
import re
import sqlite3
import time
from typing import Any

from agent.timefmt import iso_utc

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SPAN_S = 400 * 86400

#: what ``since`` accepts (the API documents this pattern): a duration back from now, or a UTC time
SINCE_PATTERN = (
    r"^(\d{1,6}(\.\d{1,3})?[smhdw]|[12]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?)$"
)
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}:\d{2})?)?$"
)
#: camera and sensor names (as the config allows them)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: bin lengths of /api/counts (they divide a day, like the analytics bins)
BINS = {
    "1m": 60,
    "5m": 300,
    "10m": 600,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "3h": 10800,
    "6h": 21600,
    "12h": 43200,
    "1d": 86400,
}


class QueryError(ValueError):
    """A parameter that cannot be understood; the message says what is expected."""


def parse_duration(text: str, what: str = "duration") -> float:
    """'90s', '15m', '6h', '2d', '1w' -> seconds (at most 400 days)."""
    m = _DUR.match(text or "")
    if not m:
        raise QueryError(f"{what} {text!r}: use a number with s, m, h, d or w (e.g. 15m, 6h, 2d)")
    return min(float(m.group(1)) * _UNIT[m.group(2)], MAX_SPAN_S)


def parse_since(text: str | None, default: str = "1h", now: float | None = None) -> float:
    """A duration back from now ('6h', at most 400 days) or an ISO-8601 time -> epoch seconds.

    A time without an offset is UTC. A day past its month's end rolls over (2026-02-30 is March 2).
    """
    now = time.time() if now is None else now
    text = (text or default).strip()
    if _DUR.match(text):
        return now - parse_duration(text, "since")
    m = _ISO.match(text)
    if not m:
        raise QueryError(
            f"since {text!r}: give a duration (30m, 6h, 2d) or an ISO-8601 time (2026-11-23T17:00:00Z)"
        )
    y, mo, d, hh, mm, ss, frac, off = m.groups()
    try:
        t = _dt.datetime(
            int(y),
            int(mo),
            1,
            int(hh or 0),
            int(mm or 0),
            int(ss or 0),
            int((frac or "0").ljust(6, "0")),
            tzinfo=_dt.timezone.utc,
        ) + _dt.timedelta(days=int(d) - 1)
    except ValueError as exc:
        raise QueryError(f"since {text!r}: {exc}") from None
    if off and off != "Z":
        sign = 1 if off[0] == "+" else -1
        t -= sign * _dt.timedelta(hours=int(off[1:3]), minutes=int(off[4:6]))
    return t.timestamp()


def missing_table(exc: sqlite3.OperationalError) -> str | None:
    """The error's text when it says a table or column is missing (an older database), else None."""
    msg = str(exc)
    return msg if "no such table" in msg or "no such column" in msg else None


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        is not None
    )


def counts(
    conn: sqlite3.Connection, *, since: float, bin_s: int, camera: str | None = None
) -> dict[str, Any]:
    """Line crossings in UTC-aligned bins (analytics' own query), plus per-bin totals for charts."""
    try:
        from agent.analytics.store import volumes
    except ImportError:
        return {"items": [], "totals": [], "note": "analytics is not installed in this build"}
    if not has_table(conn, "crossings"):
        return {
            "items": [],
            "totals": [],
            "note": "no crossings table in this database (analytics never ran on it)",
        }
    try:
        rows = volumes(conn, since, bin_s, camera)
    except sqlite3.OperationalError as exc:
        if missing_table(exc):
            return {"items": [], "totals": [], "note": f"analytics tables incomplete: {exc}"}
        raise
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["bin_start"]] = totals.get(r["bin_start"], 0) + int(r["count"])
    return {
        "items": rows,
        "totals": [{"bin_start": k, "count": v} for k, v in sorted(totals.items())],
        "note": None,
    }


def counts_doc(
    conn: sqlite3.Connection, *, since: float, bin_s: int, camera: str | None = None
) -> dict[str, Any]:
    """The ``/api/counts`` document: :func:`counts` with the window it covers."""
    return {
        "since": iso_utc(max(since, 0)),
        "bin_seconds": bin_s,
        **counts(conn, since=since, bin_s=bin_s, camera=camera),
    }


def page(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    *,
    filters: dict[str, str | None],
    since: float | None,
    after_id: int | None,
    limit: int,
) -> list[tuple[Any, ...]] | None:
    """A page of ``table``, oldest first: the newest ``limit`` since ``since``, or the first
    ``limit`` after ``after_id``; ``filters`` are column = value (``None``: any). ``None`` when the
    table does not exist (an older database)."""
    where: list[str] = []
    args: list[object] = []
    for col, value in filters.items():
        if value:
            where.append(f"{col} = ?")
            args.append(value)
    if since is not None:
        where.append("ts >= ?")
        args.append(iso_utc(max(since, 0)))
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    order = "ASC" if after_id is not None else "DESC"
    sql = (
        f"SELECT {columns} FROM {table}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id {order} LIMIT ?"
    )
    try:
        rows = conn.execute(sql, (*args, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if missing_table(exc):
            return None
        raise
    rows.sort(key=lambda r: r[0])
    return rows


def readings(
    conn: sqlite3.Connection,
    *,
    sensor: str | None = None,
    metric: str | None = None,
    since: float | None = None,
    after_id: int | None = None,
    limit: int = 500,
) -> dict[str, Any]:
    """Sensor readings (firmware_bridge's ``readings`` table), oldest first."""
    if not has_table(conn, "readings"):
        return {"items": [], "note": "no readings table in this database (no serial sensors have run on it)"}
    rows = (
        page(
            conn,
            "readings",
            "id, ts, sensor, metric, value, unit, quality",
            filters={"sensor": sensor, "metric": metric},
            since=since,
            after_id=after_id,
            limit=limit,
        )
        or []
    )
    try:
        from firmware_bridge.events import quality_names
    except ImportError:  # pragma: no cover - firmware_bridge ships with the agent

        def quality_names(mask: int) -> list[str]:
            return [] if not mask else [f"0x{mask:x}"]

    items = [
        {
            "id": r[0],
            "ts": r[1],
            "sensor": r[2],
            "metric": r[3],
            "value": r[4],
            "unit": r[5],
            "quality": list(quality_names(r[6])),
        }
        for r in rows
    ]
    return {"items": items, "note": None}


def latest_readings(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The newest value of each sensor's metrics: {sensor: {metric: {value, unit, ts}}}."""
    if not has_table(conn, "readings"):
        return {}
    out: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        "SELECT r.sensor, r.metric, r.value, r.unit, r.ts FROM readings r JOIN (SELECT sensor, metric, "
        "max(id) AS id FROM readings WHERE ts >= ? GROUP BY sensor, metric) m ON r.id = m.id",
        (iso_utc(time.time() - 86400),),
    )
    for sensor, metric, value, unit, ts in rows:
        out.setdefault(sensor, {})[metric] = {"value": value, "unit": unit, "ts": ts}
    return out


def sensor_aqi(conn: sqlite3.Connection, latest: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The EPA AQI of each PM sensor now (the summary's computation: NowCast and the daily mean)."""
    try:
        from firmware_bridge.summary import sensor_aqi as _aqi
    except ImportError:  # pragma: no cover
        return {}
    out = {}
    now = iso_utc(time.time())
    for sensor, metrics in latest.items():
        a = _aqi(conn, sensor, metrics, now)
        if a:
            out[sensor] = a
    return out


def sensor_health(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The last health snapshot of each sensor, as the daemon wrote it (for when it is not running)."""
    if not has_table(conn, "sensor_health"):
        return {}
    cols = (
        "driver",
        "port",
        "updated_ts",
        "connected",
        "last_reading_ts",
        "frames_ok",
        "frames_bad",
        "resyncs",
        "reconnects",
        "last_error",
    )
    out = {}
    for r in conn.execute(f"SELECT sensor, {', '.join(cols)} FROM sensor_health ORDER BY sensor"):
        d = dict(zip(cols, r[1:]))
        d["connected"] = bool(d["connected"])
        out[r[0]] = d
    return out


def outbox(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    kind: str | None = None,
    from_seq: int | None = None,
    limit: int = 50,
    payload: bool = False,
) -> dict[str, Any]:
    """Outbox statistics and rows (sync's own queries): the newest ``limit``, or the first ``limit``
    from ``from_seq`` on; in seq order. ``payload``: each row's message too."""
    try:
        from agent.sync import outbox as ob
    except ImportError:
        return {"stats": None, "items": [], "note": "sync is not installed in this build"}
    if not has_table(conn, "outbox"):
        return {"stats": None, "items": [], "note": "no outbox table in this database (sync never ran on it)"}
    items = ob.list_rows(conn, state=state, kind=kind, from_seq=from_seq, limit=limit)
    if payload:
        found: dict[int, str] = {}
        seqs = [r["seq"] for r in items]
        for i in range(0, len(seqs), 500):
            chunk = seqs[i : i + 500]
            found.update(
                conn.execute(
                    f"SELECT seq, payload FROM outbox_payload WHERE seq IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        for r in items:
            r["payload"] = found.get(r["seq"])  # None: pruned in between
    return {"stats": ob.stats(conn), "items": items, "note": None}


def last_stats(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The newest inference_stats row of each camera (fps, latency) for the offline status."""
    if not has_table(conn, "inference_stats"):
        return {}
    cols = (
        "ts_end",
        "model",
        "accelerator",
        "frames",
        "fps",
        "latency_p50_ms",
        "latency_p95_ms",
        "detections",
        "dropped_frames",
    )
    rows = conn.execute(
        f"SELECT s.camera, {', '.join('s.' + c for c in cols)} FROM inference_stats s JOIN "
        "(SELECT camera, max(id) AS id FROM inference_stats GROUP BY camera) m ON s.id = m.id"
    )
    return {r[0]: dict(zip(cols, r[1:])) for r in rows}
