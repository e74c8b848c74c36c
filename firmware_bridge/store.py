"""Tables of the serial sensors: ``readings`` (one row per value), ``sensor_health`` and
``sensor_settings`` (what each sensor's summary is computed with).

``readings.ts`` is the UTC receive time (ISO-8601, milliseconds, 'Z'); ``quality`` is the bit mask
of :mod:`firmware_bridge.events` (0: good). ``sensor_health`` holds the last health snapshot
per sensor (upserted every few seconds), so the CLI and the summary see it without the daemon.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from typing import Any

from agent.store.db import Migration
from agent.timefmt import iso_utc
from firmware_bridge.events import Message

#: (component, migrations): the tables this module defines, declared by its part (``agent.parts``)
TABLES: tuple[str, list[Migration]] = (
    "sensors",
    [
        Migration(
            1,
            "readings, sensor_health",
            """
            CREATE TABLE readings (
                id INTEGER PRIMARY KEY,
                ts TEXT NOT NULL,
                sensor TEXT NOT NULL,
                metric TEXT NOT NULL,
                value REAL NOT NULL,
                unit TEXT NOT NULL DEFAULT '',
                quality INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX readings_ts ON readings (ts);
            CREATE INDEX readings_sensor_metric_ts ON readings (sensor, metric, ts);
            CREATE TABLE sensor_health (
                sensor TEXT PRIMARY KEY,
                driver TEXT NOT NULL,
                port TEXT NOT NULL,
                updated_ts TEXT NOT NULL,
                connected INTEGER NOT NULL,
                last_reading_ts TEXT,
                frames_ok INTEGER NOT NULL DEFAULT 0,
                frames_bad INTEGER NOT NULL DEFAULT 0,
                resyncs INTEGER NOT NULL DEFAULT 0,
                reconnects INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                detail TEXT NOT NULL DEFAULT '{}'
            );
            """,
        ),
        Migration(
            2,
            "sensor_settings: what each sensor's summary is computed with",
            """
            -- the AQI table, NowCast on/off and GPS clock tolerance of each sensor (JSON), written by
            -- the sensor service at start, so a summary is computed from the database alone
            CREATE TABLE sensor_settings (
                sensor TEXT PRIMARY KEY,
                settings TEXT NOT NULL,
                updated_ts TEXT NOT NULL
            );
            """,
        ),
    ],
)


def write_settings(conn: sqlite3.Connection, sensor: str, settings: dict[str, Any], now: float) -> None:
    """Record ``sensor``'s summary settings (``SensorConfig.summary_settings()``)."""
    conn.execute(
        "INSERT INTO sensor_settings (sensor, settings, updated_ts) VALUES (?, ?, ?)"
        " ON CONFLICT (sensor) DO UPDATE SET settings = excluded.settings, updated_ts = excluded.updated_ts",
        (sensor, json.dumps(settings, sort_keys=True), iso_utc(now)),
    )


def reading_rows(
    sensor: str, messages: Iterable[Message], ts: float, extra_quality: int = 0
) -> list[dict[str, Any]]:
    """Rows for ``readings`` from decoded messages received at ``ts`` (epoch seconds).
    Non-finite values are dropped (SQLite would store them as NULL)."""
    stamp = iso_utc(ts)
    rows = []
    for msg in messages:
        for m in msg.measurements:
            if not math.isfinite(m.value):
                continue
            rows.append(
                {
                    "ts": stamp,
                    "sensor": sensor,
                    "metric": m.metric,
                    "value": float(m.value),
                    "unit": m.unit,
                    "quality": m.quality | extra_quality,
                }
            )
    return rows


def upsert_health(
    conn: sqlite3.Connection, sensor: str, driver: str, port: str, h: dict[str, Any], ts: float
) -> None:
    """Write one sensor's health snapshot (run in the writer thread)."""
    core = ("connected", "last_reading_ts", "frames_ok", "frames_bad", "resyncs", "reconnects", "last_error")
    detail = {k: v for k, v in h.items() if k not in core}
    conn.execute(
        "INSERT INTO sensor_health (sensor, driver, port, updated_ts, connected, last_reading_ts, frames_ok, frames_bad,"
        " resyncs, reconnects, last_error, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(sensor) DO UPDATE SET driver=excluded.driver, port=excluded.port, updated_ts=excluded.updated_ts,"
        " connected=excluded.connected, last_reading_ts=excluded.last_reading_ts, frames_ok=excluded.frames_ok,"
        " frames_bad=excluded.frames_bad, resyncs=excluded.resyncs, reconnects=excluded.reconnects,"
        " last_error=excluded.last_error, detail=excluded.detail",
        (
            sensor,
            driver,
            port,
            iso_utc(ts),
            int(bool(h["connected"])),
            h["last_reading_ts"],
            h["frames_ok"],
            h["frames_bad"],
            h["resyncs"],
            h["reconnects"],
            h["last_error"],
            json.dumps(detail, default=str),
        ),
    )


def _prune_readings(conn: sqlite3.Connection, limit: int) -> int:
    from agent.sync.retention import prune_summarised

    return prune_summarised(conn, limit, [("readings", "ts")], "pruned_readings")
