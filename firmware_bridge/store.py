"""Tables of the serial sensors: ``readings`` (one row per value) and ``sensor_health``.

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
        )
    ],
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
