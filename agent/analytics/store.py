"""Analytics tables and the reads and writes on them.

Times are the store's one format (UTC ISO-8601 with milliseconds, ``iso_utc``). Bins are upserted
(``count = count + new``) so a bin flushed at shutdown and continued after a restart adds up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from agent.analytics.volumes import volumes as volumes  # the counts query, re-exported
from agent.store.db import Migration
from agent.timefmt import iso_utc

#: (component, migrations): the tables this module defines, declared by its part (``agent.parts``)
TABLES: tuple[str, list[Migration]] = (
    "analytics",
    [
        Migration(
            1,
            "tracks, crossings, volume_bins, zone_bins, zone_visits, speeds, forecasts",
            """
            CREATE TABLE tracks (
                camera TEXT NOT NULL,
                id INTEGER NOT NULL,             -- detections.track_id of this camera
                class TEXT NOT NULL,             -- majority vote of its detections' labels
                first_ts TEXT NOT NULL,
                last_ts TEXT NOT NULL,
                frames INTEGER NOT NULL,
                entry_x REAL, entry_y REAL,      -- anchor point (pixels) when first seen
                exit_x REAL, exit_y REAL,        -- and when last seen
                crossings INTEGER NOT NULL DEFAULT 0,
                labels TEXT,                     -- JSON: label -> summed score
                PRIMARY KEY (camera, id)
            );
            CREATE INDEX tracks_last_ts ON tracks (last_ts);
            CREATE TABLE crossings (
                id INTEGER PRIMARY KEY,
                ts TEXT NOT NULL,
                camera TEXT NOT NULL,
                line TEXT NOT NULL,
                direction TEXT NOT NULL,
                class TEXT NOT NULL,
                track_id INTEGER NOT NULL,
                x REAL, y REAL
            );
            CREATE INDEX crossings_ts ON crossings (ts);
            CREATE TABLE volume_bins (
                camera TEXT NOT NULL,
                line TEXT NOT NULL,
                direction TEXT NOT NULL,
                class TEXT NOT NULL,
                bin_start TEXT NOT NULL,
                bin_s INTEGER NOT NULL,
                count INTEGER NOT NULL,
                coverage_s REAL NOT NULL,        -- seconds of the bin the camera observed
                PRIMARY KEY (camera, line, direction, class, bin_start, bin_s)
            );
            CREATE INDEX volume_bins_start ON volume_bins (bin_start);
            CREATE TABLE zone_bins (
                camera TEXT NOT NULL,
                zone TEXT NOT NULL,
                bin_start TEXT NOT NULL,
                bin_s INTEGER NOT NULL,
                peak INTEGER NOT NULL,
                occupancy_s REAL NOT NULL,       -- integral of occupancy over time (mean = / coverage_s)
                entries INTEGER NOT NULL,
                coverage_s REAL NOT NULL,
                PRIMARY KEY (camera, zone, bin_start, bin_s)
            );
            CREATE TABLE zone_visits (
                id INTEGER PRIMARY KEY,
                camera TEXT NOT NULL,
                zone TEXT NOT NULL,
                track_id INTEGER NOT NULL,
                class TEXT NOT NULL,
                enter_ts TEXT NOT NULL,
                exit_ts TEXT NOT NULL,
                dwell_s REAL NOT NULL,
                speed_kmh REAL
            );
            CREATE INDEX zone_visits_exit ON zone_visits (exit_ts);
            CREATE TABLE speeds (
                id INTEGER PRIMARY KEY,
                ts TEXT NOT NULL,
                camera TEXT NOT NULL,
                source TEXT NOT NULL,            -- 'zone:NAME' or 'segment:NAME'
                track_id INTEGER NOT NULL,
                class TEXT NOT NULL,
                speed_kmh REAL NOT NULL
            );
            CREATE INDEX speeds_ts ON speeds (ts);
            CREATE TABLE forecasts (
                id INTEGER PRIMARY KEY,
                camera TEXT NOT NULL,
                line TEXT NOT NULL,
                direction TEXT NOT NULL,
                issued_ts TEXT NOT NULL,
                horizon_min INTEGER NOT NULL,
                target_start TEXT NOT NULL,
                target_end TEXT NOT NULL,
                predicted REAL NOT NULL,
                actual REAL,                     -- filled when the window has been observed
                bt_mae REAL, bt_mape REAL, bt_n INTEGER,  -- rolling backtest at issue time
                UNIQUE (camera, line, direction, horizon_min, target_start)
            );
            CREATE INDEX forecasts_issued ON forecasts (issued_ts);
            """,
        ),
        Migration(
            2, "bin change numbers: bins are sent by change, not by time (#14)", lambda c: _change_numbers(c)
        ),
        Migration(
            3,
            "crossings by camera and time: `counts` reads one camera's recent crossings, not the whole table",
            "CREATE INDEX crossings_camera_ts ON crossings (camera, ts);",
        ),
    ],
)


def change_triggers(table: str, counted: str) -> list[str]:
    """Triggers giving every insert and every update of ``counted`` columns of ``table`` the next number
    of the shared ``bins`` counter (kept in its own table, so numbers are never reused, even when rows
    are deleted). The single writer serialises transactions: a reader's snapshot holding change N holds
    every change below N."""
    bump = (
        "UPDATE change_counter SET value = value + 1 WHERE name = 'bins';"
        f" UPDATE {table} SET change_seq = (SELECT value FROM change_counter WHERE name = 'bins')"
        " WHERE rowid = new.rowid;"
    )
    return [
        f"CREATE TRIGGER {table}_changed_ins AFTER INSERT ON {table} BEGIN {bump} END",
        f"CREATE TRIGGER {table}_changed_upd AFTER UPDATE OF {counted} ON {table} BEGIN {bump} END",
    ]


def add_change_numbers(conn: sqlite3.Connection, tables: dict[str, str], mark_key: str | None = None) -> None:
    """Give each table (name -> the columns whose update is a change) its ``change_seq`` column, index
    and triggers, and number the rows it holds. On an upgrade, the rows that end by the last summarised
    window (the old time selection sent them) are numbered first and the summary mark is set after
    them: only the bins it never sent go out again. ``mark_key``: the ``sync_state`` key of the
    section that sends these tables (default: the analytics section's)."""
    mark_key = mark_key or SUMMARY_MARK
    conn.execute("CREATE TABLE IF NOT EXISTS change_counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("INSERT OR IGNORE INTO change_counter (name, value) VALUES ('bins', 0)")
    exists = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    last_end = (
        conn.execute("SELECT max(end) FROM summary_windows").fetchone()[0]
        if "summary_windows" in exists
        else None
    )
    end_expr = "strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds')"
    rows: list[tuple[bool, str, int]] = []
    for t in tables:
        conn.execute(f"ALTER TABLE {t} ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0")
        rows += [
            (bool(unsent), t, rowid)
            for rowid, unsent in conn.execute(f"SELECT rowid, {end_expr} > ? FROM {t}", (last_end or "",))
        ]
    rows.sort()
    base = conn.execute("SELECT value FROM change_counter WHERE name = 'bins'").fetchone()[0]
    for i, (_, t, rowid) in enumerate(rows):
        conn.execute(f"UPDATE {t} SET change_seq = ? WHERE rowid = ?", (base + i + 1, rowid))
    conn.execute("UPDATE change_counter SET value = ? WHERE name = 'bins'", (base + len(rows),))
    for t, counted in tables.items():
        conn.execute(f"CREATE INDEX {t}_change ON {t} (change_seq)")
        for trig in change_triggers(t, counted):
            conn.execute(trig)
    sent = sum(1 for unsent, _, _ in rows if not unsent)
    if last_end and sent and "sync_state" in exists:
        row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (mark_key,)).fetchone()
        if row is None or row[0] >= base:  # no mark yet, or it covered every change numbered before
            conn.execute(
                "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (mark_key, base + sent),
            )


#: ``sync_state`` key: the highest bin change number that a committed summary covered
SUMMARY_MARK = "summary_bins_mark"


def _change_numbers(conn: sqlite3.Connection) -> None:
    add_change_numbers(
        conn, {"volume_bins": "count, coverage_s", "zone_bins": "peak, occupancy_s, entries, coverage_s"}
    )


def track_row(camera: str, t: Any, meta: dict[str, Any]) -> dict[str, Any]:
    entry = tuple(round(v, 1) for v in meta["entry"]) if meta.get("entry") else (None, None)
    exit_ = tuple(round(v, 1) for v in meta["exit"]) if meta.get("exit") else (None, None)
    return {
        "camera": camera,
        "id": t.id,
        "class": t.label,
        "first_ts": iso_utc(t.first_ts),
        "last_ts": iso_utc(t.last_ts),
        "frames": t.frames,
        "entry_x": entry[0],
        "entry_y": entry[1],
        "exit_x": exit_[0],
        "exit_y": exit_[1],
        "crossings": meta.get("crossings", 0),
        "labels": json.dumps({k: round(v, 3) for k, v in t.votes.items()}, sort_keys=True),
    }


def upsert_tracks(rows: list[dict[str, Any]]):
    """A writer function that inserts or replaces track rows."""

    def fn(conn: sqlite3.Connection) -> None:
        if not rows:
            return
        cols = list(rows[0])
        conn.executemany(
            f"INSERT OR REPLACE INTO tracks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in rows],
        )

    return fn


def upsert_bin(camera: str, b: Any):
    """A writer function adding a closed bin's volumes and zone figures to the tables."""
    start = iso_utc(b.start)
    vol = [
        (camera, line, d, cls, start, b.bin_s, n, b.coverage_s)
        for (line, d, cls), n in sorted(b.counts.items())
    ]
    zon = [
        (camera, name, start, b.bin_s, z.peak, z.occ_integral, z.entries, b.coverage_s)
        for name, z in sorted(b.zones.items())
    ]

    def fn(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (camera, line, direction, class, bin_start, bin_s)"
            " DO UPDATE SET count = count + excluded.count,"
            " coverage_s = min(bin_s, coverage_s + excluded.coverage_s)",
            vol,
        )
        conn.executemany(
            "INSERT INTO zone_bins (camera, zone, bin_start, bin_s, peak, occupancy_s, entries, coverage_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (camera, zone, bin_start, bin_s)"
            " DO UPDATE SET peak = max(peak, excluded.peak), occupancy_s = occupancy_s + excluded.occupancy_s,"
            " entries = entries + excluded.entries, coverage_s = min(bin_s, coverage_s + excluded.coverage_s)",
            zon,
        )

    return fn


def forecast_writes(
    camera: str,
    line: str,
    direction: str,
    issued: Iterable[Any],
    scored: Iterable[Any],
    skill: dict[int, dict[str, Any]],
):
    """A writer function storing new forecasts (with the backtest at issue time) and scored actuals."""
    new = [
        (
            camera,
            line,
            direction,
            iso_utc(p.issued),
            p.horizon_min,
            iso_utc(p.target_start),
            iso_utc(p.target_end),
            round(p.predicted, 3),
            skill.get(p.horizon_min, {}).get("mae"),
            skill.get(p.horizon_min, {}).get("mape"),
            skill.get(p.horizon_min, {}).get("n", 0),
        )
        for p in issued
    ]
    done = [(p.actual, camera, line, direction, p.horizon_min, iso_utc(p.target_start)) for p in scored]

    def fn(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "UPDATE forecasts SET actual = ? WHERE camera = ? AND line = ? AND direction = ? AND horizon_min = ?"
            " AND target_start = ?",
            done,
        )
        conn.executemany(
            "INSERT OR REPLACE INTO forecasts (camera, line, direction, issued_ts, horizon_min, target_start, target_end,"
            " predicted, bt_mae, bt_mape, bt_n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            new,
        )

    return fn


# -- reads ------------------------------------------------------------------------------------------


def next_track_id(conn: sqlite3.Connection, camera: str) -> int:
    try:
        row = conn.execute("SELECT max(id) FROM tracks WHERE camera = ?", (camera,)).fetchone()
    except sqlite3.OperationalError:  # table not there yet
        return 1
    return int(row[0] or 0) + 1


def load_history(
    conn: sqlite3.Connection, camera: str, bin_s: int, since_iso: str
) -> list[tuple[str, str, str, int, float]]:
    """(line, direction, bin_start, volume, coverage_s) of stored bins since ``since_iso``."""
    try:
        return list(
            conn.execute(
                "SELECT line, direction, bin_start, sum(count), min(coverage_s) FROM volume_bins WHERE camera = ? AND bin_s = ?"
                " AND bin_start >= ? GROUP BY line, direction, bin_start ORDER BY bin_start",
                (camera, bin_s, since_iso),
            )
        )
    except sqlite3.OperationalError:
        return []


def load_forecasts(conn: sqlite3.Connection, camera: str, since_iso: str) -> list[sqlite3.Row]:
    try:
        return list(
            conn.execute(
                "SELECT line, direction, issued_ts, horizon_min, target_start, target_end, predicted, actual FROM forecasts"
                " WHERE camera = ? AND target_end >= ? ORDER BY target_start",
                (camera, since_iso),
            )
        )
    except sqlite3.OperationalError:
        return []


def _prune_raw(conn, limit: int) -> int:
    from agent.sync.retention import prune_summarised

    # per-event rows; the 15-minute bins (volume_bins, zone_bins) and forecasts are kept
    return prune_summarised(
        conn,
        limit,
        [("crossings", "ts"), ("speeds", "ts"), ("zone_visits", "exit_ts"), ("tracks", "last_ts")],
        "pruned_track_events",
    )
