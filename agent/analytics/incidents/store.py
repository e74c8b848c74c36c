"""The ``incidents`` table (one row per incident, updated through its lifecycle) and its reads."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from agent.sections import change_cursor, summary_mark
from agent.store.db import Migration

#: (component, migrations): the tables this module defines, declared by its part (``agent.parts``)
TABLES: tuple[str, list[Migration]] = (
    "incidents",
    [
        Migration(
            1,
            "incidents",
            """
            CREATE TABLE incidents (
                id TEXT PRIMARY KEY,             -- the event id of every phase of this incident
                camera TEXT NOT NULL,
                rule TEXT NOT NULL,
                kind TEXT NOT NULL,              -- wrong_way, stopped_vehicle, pedestrian_on_carriageway, queue
                zone TEXT NOT NULL,
                track_id INTEGER,
                class TEXT,
                start_ts TEXT NOT NULL,
                end_ts TEXT,                     -- NULL while it lasts
                phase TEXT NOT NULL,             -- last phase: start, update, end
                updated_ts TEXT NOT NULL,
                clock_quality TEXT,
                snapshot TEXT,                   -- path of the privacy-blurred JPEG, if kept
                data TEXT NOT NULL               -- JSON: the last event of this incident
            );
            CREATE INDEX incidents_start ON incidents (start_ts);
            CREATE TABLE radar_fusion_bins (
                camera TEXT NOT NULL,
                sensor TEXT NOT NULL,
                bin_start TEXT NOT NULL,
                bin_s INTEGER NOT NULL,
                crossings INTEGER NOT NULL,          -- crossings of the radar's line
                readings INTEGER NOT NULL,           -- radar speed readings
                matched INTEGER NOT NULL,            -- crossings given a radar speed
                radar_unmatched INTEGER NOT NULL,    -- readings no crossing claimed
                crossings_unmatched INTEGER NOT NULL,
                radar_mean_kmh REAL, vision_mean_kmh REAL, mean_abs_diff_kmh REAL, mean_ratio REAL,
                PRIMARY KEY (camera, sensor, bin_start, bin_s)
            );
            """,
        ),
        Migration(
            2,
            "radar fusion bin change numbers: sent by change, not by time (#14)",
            lambda c: _radar_change_numbers(c),
        ),
    ],
)

#: ``sync_state`` key: the highest radar fusion bin change number that a committed summary covered
RADAR_MARK = "summary_radar_mark"
#: most changed radar fusion bins one summary takes (a backlog drains over the next ones)
MAX_RADAR_CHANGES = 500
_FUSION_COUNTED = (
    "crossings, readings, matched, radar_unmatched, crossings_unmatched, radar_mean_kmh, vision_mean_kmh,"
    " mean_abs_diff_kmh, mean_ratio"
)


def _radar_change_numbers(conn: sqlite3.Connection) -> None:
    from agent.analytics.store import add_change_numbers

    add_change_numbers(conn, {"radar_fusion_bins": _FUSION_COUNTED}, RADAR_MARK)


def upsert(
    conn: sqlite3.Connection, ev: dict[str, Any], updated_ts: str, snapshot: str | None = None
) -> None:
    """Insert or advance one incident from one of its events."""
    conn.execute(
        """INSERT INTO incidents (id, camera, rule, kind, zone, track_id, class, start_ts, end_ts, phase,
                                  updated_ts, clock_quality, snapshot, data)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET end_ts = excluded.end_ts, phase = excluded.phase,
               updated_ts = excluded.updated_ts, track_id = excluded.track_id,
               snapshot = COALESCE(incidents.snapshot, excluded.snapshot), data = excluded.data""",
        (
            ev["id"],
            ev["camera"],
            ev["rule"],
            ev["kind"],
            ev["zone"],
            ev["track_id"],
            ev["class"],
            ev["start"],
            ev["end"],
            ev["phase"],
            updated_ts,
            (ev.get("clock") or {}).get("quality"),
            snapshot,
            json.dumps(ev, separators=(",", ":")),
        ),
    )


def upsert_fusion_bin(camera: str, sensor: str, start: float, bin_s: int, f: dict[str, Any]):
    """The write of one closed bin of radar fusion figures (a restart continues the same bin)."""
    from agent.timefmt import iso_utc

    def fn(conn: sqlite3.Connection) -> None:
        conn.execute(
            """INSERT INTO radar_fusion_bins (camera, sensor, bin_start, bin_s, crossings, readings, matched,
                 radar_unmatched, crossings_unmatched, radar_mean_kmh, vision_mean_kmh, mean_abs_diff_kmh,
                 mean_ratio) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (camera, sensor, bin_start, bin_s) DO UPDATE SET
                 crossings = crossings + excluded.crossings, readings = readings + excluded.readings,
                 matched = matched + excluded.matched, radar_unmatched = radar_unmatched + excluded.radar_unmatched,
                 crossings_unmatched = crossings_unmatched + excluded.crossings_unmatched,
                 radar_mean_kmh = COALESCE(excluded.radar_mean_kmh, radar_mean_kmh),
                 vision_mean_kmh = COALESCE(excluded.vision_mean_kmh, vision_mean_kmh),
                 mean_abs_diff_kmh = COALESCE(excluded.mean_abs_diff_kmh, mean_abs_diff_kmh),
                 mean_ratio = COALESCE(excluded.mean_ratio, mean_ratio)""",
            (
                camera,
                sensor,
                iso_utc(start),
                int(bin_s),
                f["crossings"],
                f["readings"],
                f["matched"],
                f["radar_unmatched"],
                f["crossings_unmatched"],
                f["radar_mean_kmh"],
                f["vision_mean_kmh"],
                f["mean_abs_diff_kmh"],
                f["mean_ratio"],
            ),
        )

    return fn


def recent(conn: sqlite3.Connection, limit: int = 50, since: str | None = None) -> list[dict[str, Any]]:
    """The newest incidents first, each as its last event plus ``snapshot`` (bool)."""
    sql = "SELECT data, snapshot FROM incidents"
    args: list[Any] = []
    if since:
        sql += " WHERE start_ts >= ?"
        args.append(since)
    sql += " ORDER BY start_ts DESC, id LIMIT ?"
    args.append(int(limit))
    try:
        rows = conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:  # a database from before incidents existed
        if "no such table" in str(exc):
            return []
        raise
    out = []
    for data, snap in rows:
        d = json.loads(data)
        d["snapshot"] = bool(snap)
        out.append(d)
    return out


def snapshot_path(conn: sqlite3.Connection, incident_id: str) -> str | None:
    row = conn.execute("SELECT snapshot FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return row[0] if row else None


def _prune(conn: sqlite3.Connection, limit: int) -> int:
    """Oldest ended incidents whose end a written summary already covers (snapshot files go with them)."""
    from agent.sync import outbox
    from agent.sync.retention import _summarised_until

    until = _summarised_until(conn)
    if until is None:
        return 0
    rows = conn.execute(
        "SELECT id, snapshot FROM incidents WHERE end_ts IS NOT NULL AND end_ts < ? ORDER BY end_ts LIMIT ?",
        (until, limit),
    ).fetchall()
    for _, snap in rows:
        if snap:
            Path(snap).unlink(missing_ok=True)
    conn.executemany("DELETE FROM incidents WHERE id = ?", [(r[0],) for r in rows])
    outbox.add_counter(conn, "pruned_incidents", len(rows))
    return len(rows)


def incidents_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """Summary section ``incidents``: per camera, incidents started in ``[start, end)`` by kind, those
    still active at the end of the window, and the radar fusion bins changed since the last summary
    (:func:`_fusion_changes`). None when the unit
    has no incident rules or radar (no rows at all)."""
    try:
        started = conn.execute(
            "SELECT camera, kind, COUNT(*) FROM incidents WHERE start_ts >= ? AND start_ts < ? GROUP BY 1, 2",
            (start, end),
        ).fetchall()
        active = conn.execute(
            "SELECT camera, COUNT(*) FROM incidents WHERE start_ts < ? AND (end_ts IS NULL OR end_ts >= ?) GROUP BY 1",
            (end, end),
        ).fetchall()
        fusion = _fusion_changes(conn, summary_mark(conn, RADAR_MARK))
        any_rows = conn.execute("SELECT 1 FROM incidents LIMIT 1").fetchone() or fusion
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    if not any_rows:
        return None
    cams: dict[str, dict[str, Any]] = {}

    def cam(name: str) -> dict[str, Any]:
        return cams.setdefault(name, {"started": {}, "active": 0, "radar": []})

    for camera, kind, n in started:
        cam(camera)["started"][kind] = n
    for camera, n in active:
        cam(camera)["active"] = n
    cols = [
        "camera", "sensor", "bin_start", "bin_s", "crossings", "readings", "matched", "radar_unmatched",
        "crossings_unmatched", "radar_mean_kmh", "vision_mean_kmh", "mean_abs_diff_kmh", "mean_ratio",
    ]  # fmt: skip
    for row in fusion:
        d = dict(zip(cols, row[: len(cols)]))
        d["rev"], d["late"] = row[len(cols)], row[len(cols) + 1] <= start
        cam(d.pop("camera"))["radar"].append(d)
    return {"cameras": cams}


def _fusion_changes(conn: sqlite3.Connection, mark: int) -> list[tuple]:
    """Radar fusion bins changed after ``mark`` (every column, then change_seq and the bin's end), in
    change order: a bin committed after its window's summary, or continued after a restart, is sent
    in the next summary, whole, with a higher ``rev``."""
    return conn.execute(
        "SELECT camera, sensor, bin_start, bin_s, crossings, readings, matched, radar_unmatched,"
        " crossings_unmatched, radar_mean_kmh, vision_mean_kmh, mean_abs_diff_kmh, mean_ratio, change_seq,"
        " strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds')"
        " FROM radar_fusion_bins WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
        (mark, MAX_RADAR_CHANGES),
    ).fetchall()


#: the mark after the radar fusion bins :func:`incidents_section` sends on a snapshot
radar_cursor = change_cursor(_fusion_changes, 13)
