"""The "sensors" summary section: per sensor per metric statistics, AQI, GPS fix and clock trust.

Statistics (min/mean/max/last) use only values without a disqualifying quality flag
(out_of_range, sensor_fault, warming_up, no_fix, stale); ``count`` is every row and ``flagged``
the rows left out. The AQI of a PM sensor uses the window mean of ``pm2_5`` / ``pm10``
(atmospheric), or with ``aqi_nowcast`` the NowCast of the 12 hourly means before the window end;
the payload names the table and the basis.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from typing import Any

from agent.sections import iso_utc, register_summary_section
from firmware_bridge import aqi as aqi_mod
from firmware_bridge.events import Q_NO_FIX, Q_OUT_OF_RANGE, Q_SENSOR_FAULT, Q_STALE, Q_WARMING_UP

BAD = Q_OUT_OF_RANGE | Q_SENSOR_FAULT | Q_WARMING_UP | Q_NO_FIX | Q_STALE
_SETTINGS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


def configure_sensor(
    name: str,
    *,
    aqi_table: str = aqi_mod.DEFAULT_TABLE,
    aqi_nowcast: bool = False,
    clock_tolerance_s: float = 2.0,
) -> None:
    """Per-sensor summary settings (the service sets them from the config)."""
    with _LOCK:
        _SETTINGS[name] = {
            "aqi_table": aqi_table,
            "aqi_nowcast": aqi_nowcast,
            "clock_tolerance_s": clock_tolerance_s,
        }


def _settings(name: str) -> dict[str, Any]:
    with _LOCK:
        return dict(
            _SETTINGS.get(
                name, {"aqi_table": aqi_mod.DEFAULT_TABLE, "aqi_nowcast": False, "clock_tolerance_s": 2.0}
            )
        )


def metric_stats(conn: sqlite3.Connection, start: str, end: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{sensor: {metric: {count, flagged, min, mean, max, last, unit}}}`` for ``[start, end)``."""
    rows = conn.execute(
        f"""
        SELECT sensor, metric, MAX(unit), COUNT(*), SUM((quality & {BAD}) != 0),
               MIN(CASE WHEN (quality & {BAD}) = 0 THEN value END),
               AVG(CASE WHEN (quality & {BAD}) = 0 THEN value END),
               MAX(CASE WHEN (quality & {BAD}) = 0 THEN value END),
               (SELECT r2.value FROM readings r2 WHERE r2.sensor = r.sensor AND r2.metric = r.metric
                  AND r2.ts >= ? AND r2.ts < ? AND (r2.quality & {BAD}) = 0 ORDER BY r2.ts DESC, r2.id DESC LIMIT 1)
        FROM readings r WHERE ts >= ? AND ts < ? GROUP BY sensor, metric ORDER BY sensor, metric
        """,
        (start, end, start, end),
    ).fetchall()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sensor, metric, unit, count, flagged, vmin, vmean, vmax, last in rows:
        out.setdefault(sensor, {})[metric] = {
            "count": count,
            "flagged": flagged or 0,
            "min": vmin,
            "mean": None if vmean is None else round(vmean, 4),
            "max": vmax,
            "last": last,
            "unit": unit,
        }
    return out


def _hourly_means(conn: sqlite3.Connection, sensor: str, metric: str, end: str) -> list[float | None]:
    end_t = dt.datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp()
    out: list[float | None] = []
    for h in range(12):
        a, b = iso_utc(end_t - (h + 1) * 3600), iso_utc(end_t - h * 3600)
        v = conn.execute(
            f"SELECT AVG(value) FROM readings WHERE sensor=? AND metric=? AND ts>=? AND ts<?"
            f" AND (quality & {BAD}) = 0",
            (sensor, metric, a, b),
        ).fetchone()[0]
        out.append(v)
    return out


def sensor_aqi(
    conn: sqlite3.Connection, sensor: str, metrics: dict[str, dict[str, Any]], end: str
) -> dict | None:
    s = _settings(sensor)
    table = s["aqi_table"]
    if s["aqi_nowcast"]:
        pm25 = (
            aqi_mod.nowcast(_hourly_means(conn, sensor, "pm2_5", end), "pm25") if "pm2_5" in metrics else None
        )
        pm10 = (
            aqi_mod.nowcast(_hourly_means(conn, sensor, "pm10", end), "pm10") if "pm10" in metrics else None
        )
        basis = "nowcast"
    else:
        pm25 = metrics.get("pm2_5", {}).get("mean")
        pm10 = metrics.get("pm10", {}).get("mean")
        basis = "window_mean"
    if pm25 is None and pm10 is None:
        return None
    result = aqi_mod.aqi(pm25, pm10, table)
    result.update({"basis": basis, "pm2_5": pm25, "pm10": pm10})
    return result


def sensors_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    try:
        stats = metric_stats(conn, start, end)
        health = {
            r[0]: r
            for r in conn.execute(
                "SELECT sensor, driver, connected, frames_ok, frames_bad, resyncs, reconnects, last_error, detail FROM sensor_health"
            )
        }
    except sqlite3.OperationalError:  # the sensors tables do not exist in this database
        return None
    if not stats and not health:
        return None
    out: dict[str, Any] = {"sensors": {}, "aqi": {}}
    for name in sorted(set(stats) | set(health)):
        entry: dict[str, Any] = {"metrics": stats.get(name, {})}
        if name in health:
            _, driver, connected, ok, bad, resyncs, reconnects, last_error, detail = health[name]
            entry["health"] = {
                "driver": driver,
                "connected": bool(connected),
                "frames_ok": ok,
                "frames_bad": bad,
                "resyncs": resyncs,
                "reconnects": reconnects,
                "last_error": last_error,
            }
        out["sensors"][name] = entry
        a = sensor_aqi(conn, name, stats.get(name, {}), end)
        if a:
            out["aqi"][name] = a
        m = stats.get(name, {})
        if "gps_fix_quality" in m or "clock_offset_s" in m:
            off = m.get("clock_offset_s", {}).get("last")
            tol = _settings(name)["clock_tolerance_s"]
            out["gps"] = {
                "sensor": name,
                "fix_quality": m.get("gps_fix_quality", {}).get("last"),
                "satellites": m.get("gps_satellites", {}).get("last"),
                "hdop": m.get("gps_hdop", {}).get("last"),
                "clock_offset_s": off,
                "clock_trusted": None if off is None else abs(off) <= tol,
            }
    return out


register_summary_section("sensors", sensors_section)
__all__ = ["sensors_section", "configure_sensor", "metric_stats"]
