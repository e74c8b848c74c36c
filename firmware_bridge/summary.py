"""The "sensors" summary section: per sensor per metric statistics, AQI, GPS fix and clock trust.

Statistics (min/mean/max/last) use only values without a disqualifying quality flag
(out_of_range, sensor_fault, warming_up, no_fix, stale); ``count`` is every row and ``flagged``
the rows left out. The AQI of a PM sensor follows the EPA: hourly averages of ``pm2_5`` / ``pm10``
(atmospheric), the NowCast of the 12 complete hours before the window end for the current AQI
(``aqi_nowcast = false``: the window mean instead), and the 24-hour mean of the last complete UTC
day for the daily AQI; each names its basis and its valid hours (see :mod:`firmware_bridge.aqi`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from typing import Any

from agent.timefmt import iso_utc
from firmware_bridge import aqi as aqi_mod
from firmware_bridge.events import Q_NO_FIX, Q_OUT_OF_RANGE, Q_SENSOR_FAULT, Q_STALE, Q_WARMING_UP

BAD = Q_OUT_OF_RANGE | Q_SENSOR_FAULT | Q_WARMING_UP | Q_NO_FIX | Q_STALE
_LOCK = threading.Lock()
#: a sensor's summary settings when the database has none for it (the config's defaults)
DEFAULT_SETTINGS: dict[str, Any] = {
    "aqi_table": aqi_mod.DEFAULT_TABLE,
    "aqi_nowcast": True,
    "clock_tolerance_s": 2.0,
}


def _settings(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    """``name``'s summary settings as the sensor service recorded them (``sensor_settings``), over
    the defaults; a database without the table (an older one) or the sensor gets the defaults."""
    try:
        row = conn.execute("SELECT settings FROM sensor_settings WHERE sensor = ?", (name,)).fetchone()
    except sqlite3.OperationalError:
        row = None
    try:
        stored = json.loads(row[0]) if row else {}
    except (TypeError, ValueError):
        stored = {}
    return {**DEFAULT_SETTINGS, **{k: v for k, v in stored.items() if k in DEFAULT_SETTINGS}}


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


def hourly_means(
    conn: sqlite3.Connection, sensor: str, metric: str, end_hour: float, hours: int
) -> list[dict[str, Any]]:
    """The ``hours`` UTC hours before ``end_hour`` (epoch seconds on an hour), most recent first:
    ``{"start", "mean", "minutes", "valid"}``. ``mean`` is the average of the unflagged readings; an
    hour is valid with at least ``HOUR_MIN_MINUTES`` minutes holding a reading (else ``mean`` is None)."""
    a, b = iso_utc(end_hour - hours * 3600), iso_utc(end_hour)
    got = {
        h: (m, v)
        for h, m, v in conn.execute(
            f"SELECT substr(ts, 1, 13), COUNT(DISTINCT substr(ts, 1, 16)), AVG(value) FROM readings"
            f" WHERE sensor = ? AND metric = ? AND ts >= ? AND ts < ? AND (quality & {BAD}) = 0"
            f" GROUP BY substr(ts, 1, 13)",
            (sensor, metric, a, b),
        )
    }
    out = []
    for i in range(hours):
        t = end_hour - (i + 1) * 3600
        key = iso_utc(t)[:13]
        minutes, mean = got.get(key, (0, None))
        valid = minutes >= aqi_mod.HOUR_MIN_MINUTES and mean is not None
        out.append({"start": iso_utc(t), "mean": mean if valid else None, "minutes": minutes, "valid": valid})
    return out


_POLS = (("pm2_5", "pm25"), ("pm10", "pm10"))


def _result(table: str, basis: str, a: str, b: str, conc: dict[str, float | None], hours: dict, why: str):
    base = {"basis": basis, "from": a, "to": b, "hours_valid": hours}
    c25, c10 = conc.get("pm2_5"), conc.get("pm10")
    if c25 is None and c10 is None:
        return base | {
            "aqi": None,
            "category": None,
            "color": None,
            "pm2_5": None,
            "pm10": None,
            "missing": why,
        }
    r = aqi_mod.aqi(c25, c10, table)
    return base | {
        "aqi": r["aqi"],
        "category": r["category"],
        "color": r["color"],
        "dominant": r["dominant"],
        "sub_indices": r["sub_indices"],
        "pm2_5": c25,
        "pm10": c10,
    }


_DAILY: dict[tuple[str, str, str, str], dict[str, Any]] = {}


def _db_file(conn: sqlite3.Connection) -> str:
    """The file behind ``conn`` ("" for an in-memory database)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""


def sensor_aqi(
    conn: sqlite3.Connection, sensor: str, metrics: dict[str, dict[str, Any]], end: str
) -> dict | None:
    """The EPA AQI of a PM sensor: ``current`` (NowCast over the 12 complete hours before ``end``, or
    the window mean with ``aqi_nowcast = false``) and ``daily`` (24-hour mean of the last complete
    UTC day), each with its basis, period and the number of valid hours per pollutant."""
    present = [(m, p) for m, p in _POLS if m in metrics]
    if not present:
        return None
    s = _settings(conn, sensor)
    table = s["aqi_table"]
    end_t = dt.datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp()
    if s["aqi_nowcast"]:
        current = _nowcast_aqi(conn, sensor, present, table, end_t - end_t % 3600)
    else:
        conc = {m: metrics[m].get("mean") for m, _ in present}
        current = _result(table, "window_mean", "", end, conc, {}, "no valid reading in the window")
        current.pop("hours_valid")
        current.pop("from")
    daily = _daily_aqi(conn, sensor, present, table, end_t)
    return {"table": table, "current": current, "daily": dict(daily)}


def _nowcast_aqi(
    conn: sqlite3.Connection, sensor: str, present: list[tuple[str, str]], table: str, hour: float
) -> dict[str, Any]:
    """NowCast over the 12 complete hours before ``hour``."""
    conc, valid = {}, {}
    for m, p in present:
        hrs = hourly_means(conn, sensor, m, hour, 12)
        conc[m] = aqi_mod.nowcast([h["mean"] for h in hrs], p)
        valid[m] = sum(h["valid"] for h in hrs)
    return _result(
        table,
        "nowcast",
        iso_utc(hour - 12 * 3600),
        iso_utc(hour),
        conc,
        valid,
        "NowCast needs valid hourly averages in 2 of the 3 latest hours",
    )


def _daily_aqi(
    conn: sqlite3.Connection, sensor: str, present: list[tuple[str, str]], table: str, end_t: float
) -> dict[str, Any]:
    """The 24-hour mean AQI of the last complete UTC day before ``end_t`` (cached once settled)."""
    day_end = end_t - end_t % 86400
    day = iso_utc(day_end - 86400)[:10]
    # Cached per database file: one process may hold several (a hub, tests), and the same sensor
    # name on two units is two sensors. Only once the day has settled (an hour past its end, when
    # late readings of its last minutes have been committed) is it kept; until then it is recomputed.
    key = (_db_file(conn), sensor, day, table)
    settled = end_t - day_end >= 3600
    daily = _DAILY.get(key) if settled else None
    if daily is not None:
        return daily
    conc, valid = {}, {}
    for m, p in present:
        hrs = hourly_means(conn, sensor, m, day_end, 24)
        conc[m] = aqi_mod.daily_mean([h["mean"] for h in hrs], p)
        valid[m] = sum(h["valid"] for h in hrs)
    daily = _result(
        table,
        "24h_mean",
        iso_utc(day_end - 86400),
        iso_utc(day_end),
        conc,
        valid,
        f"a daily AQI needs {aqi_mod.DAY_MIN_HOURS} of 24 valid hourly averages",
    )
    if settled:
        with _LOCK:
            if len(_DAILY) > 256:
                _DAILY.clear()
            _DAILY[key] = daily
    return daily


def gps_of(name: str, m: dict[str, dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any] | None:
    if "gps_fix_quality" not in m and "clock_offset_s" not in m:
        return None
    off = m.get("clock_offset_s", {}).get("last")
    tol = settings["clock_tolerance_s"]
    return {
        "sensor": name,
        "fix_quality": m.get("gps_fix_quality", {}).get("last"),
        "satellites": m.get("gps_satellites", {}).get("last"),
        "hdop": m.get("gps_hdop", {}).get("last"),
        "latitude": m.get("latitude", {}).get("last"),
        "longitude": m.get("longitude", {}).get("last"),
        "clock_offset_s": off,
        "clock_trusted": None if off is None else abs(off) <= tol,
    }


def sensors_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """``{sensor: {driver, metrics, health, aqi}}``: one entry per sensor (schema 2: no inner
    ``sensors`` map; the AQI sits with its sensor; the GPS fix is the ``gps`` section)."""
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
    out: dict[str, Any] = {}
    for name in sorted(set(stats) | set(health)):
        entry: dict[str, Any] = {"driver": health[name][1] if name in health else None}
        entry["metrics"] = stats.get(name, {})
        if name in health:
            _, driver, connected, ok, bad, resyncs, reconnects, last_error, detail = health[name]
            entry["health"] = {
                "connected": bool(connected),
                "frames_ok": ok,
                "frames_bad": bad,
                "resyncs": resyncs,
                "reconnects": reconnects,
                "last_error": last_error,
            }
        else:
            entry["health"] = None
        a = sensor_aqi(conn, name, stats.get(name, {}), end)
        if a:
            entry["aqi"] = a
        out[name] = entry
    return out


def gps_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """The GPS fix and whether the clock is trusted (the first sensor with a fix in the window)."""
    try:
        stats = metric_stats(conn, start, end)
    except sqlite3.OperationalError:
        return None
    for name in sorted(stats):
        g = gps_of(name, stats[name], _settings(conn, name))
        if g:
            return g
    return None


__all__ = ["sensors_section", "gps_section", "metric_stats"]
