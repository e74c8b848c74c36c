"""/api/readings carries each PM sensor's EPA AQI (NowCast and daily) with its category colour."""

from __future__ import annotations

import time

from agent.api import queries
from agent.store.db import Database
from agent.timefmt import iso_utc


def test_readings_api_aqi_with_category_colour(tmp_path):
    db = Database(tmp_path / "a.sqlite")
    now = time.time()
    hour = now - now % 3600
    rows = [
        (iso_utc(hour - h * 3600 + m * 60 + 1), "air", "pm2_5", 40.0, "ug/m3", 0)
        for h in range(1, 4)
        for m in range(60)
    ]
    db.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
    )
    a = queries.sensor_aqi(db.conn, queries.latest_readings(db.conn))["air"]
    # three steady hours of 40 ug/m3: NowCast 40.0 -> AQI 112 (101 + 49/19.9 * 4.5), orange
    assert a["current"]["aqi"] == 112 and a["current"]["color"] == "#ff7e00"
    assert a["current"]["category"] == "Unhealthy for Sensitive Groups" and a["current"]["basis"] == "nowcast"
    db.close()
