"""The "analytics" summary section: counts, bins, occupancy, speeds and forecasts. Never boxes or images."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.sections import register_summary_section


def _pct(vals: list[float], p: float) -> float | None:
    if not vals:
        return None
    vals = sorted(vals)
    k = (len(vals) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(vals) - 1)
    return round(vals[lo] + (vals[hi] - vals[lo]) * (k - lo), 1)


def analytics_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """Volumes per camera/line/direction/class in ``[start, end)``, bins completed in it, zone peaks,
    speed percentiles and the latest forecasts with their backtest error."""
    try:
        vol = list(
            conn.execute(
                "SELECT camera, line, direction, class, count(*) FROM crossings WHERE ts >= ? AND ts < ?"
                " GROUP BY camera, line, direction, class",
                (start, end),
            )
        )
        bins = list(
            conn.execute(
                "SELECT camera, line, direction, class, bin_start, bin_s, count, coverage_s FROM volume_bins"
                " WHERE strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds') > ?"
                " AND strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds') <= ? ORDER BY bin_start",
                (start, end),
            )
        )
        zones = list(
            conn.execute(
                "SELECT camera, zone, max(peak), sum(entries) FROM zone_bins WHERE bin_start >= ? AND bin_start < ?"
                " GROUP BY camera, zone",
                (start, end),
            )
        )
        dwell = list(
            conn.execute(
                "SELECT camera, zone, dwell_s FROM zone_visits WHERE exit_ts >= ? AND exit_ts < ?",
                (start, end),
            )
        )
        speeds = list(
            conn.execute(
                "SELECT camera, source, speed_kmh FROM speeds WHERE ts >= ? AND ts < ?", (start, end)
            )
        )
        fc = list(
            conn.execute(
                "SELECT f.camera, f.line, f.direction, f.horizon_min, f.target_start, f.target_end, f.predicted,"
                " f.bt_mae, f.bt_mape, f.bt_n FROM forecasts f JOIN (SELECT camera, line, direction, max(issued_ts) AS it"
                " FROM forecasts WHERE issued_ts < ? GROUP BY camera, line, direction) l ON f.camera = l.camera AND"
                " f.line = l.line AND f.direction = l.direction AND f.issued_ts = l.it ORDER BY f.horizon_min",
                (end,),
            )
        )
    except sqlite3.OperationalError:  # tables not created (analytics never ran on this database)
        return None
    if not (vol or bins or zones or speeds or fc):
        return None
    cams: dict[str, Any] = {}

    def cam(name: str) -> dict[str, Any]:
        return cams.setdefault(name, {"volumes": {}, "bins": [], "zones": {}, "speeds": {}, "forecasts": {}})

    for c, line, d, cls, n in vol:
        cam(c)["volumes"].setdefault(line, {}).setdefault(d, {})[cls] = n
    grouped: dict[tuple[str, str, int], dict[str, Any]] = {}
    for c, line, d, cls, bstart, bin_s, n, cov in bins:
        g = grouped.setdefault(
            (c, bstart, bin_s),
            {"start": bstart, "minutes": bin_s // 60, "coverage": round(cov / bin_s, 3), "counts": {}},
        )
        g["coverage"] = min(g["coverage"], round(cov / bin_s, 3))
        if n:
            g["counts"].setdefault(line, {}).setdefault(d, {})[cls] = n
    for (c, _, _), g in grouped.items():
        cam(c)["bins"].append(g)
    for c, z, peak, entries in zones:
        cam(c)["zones"][z] = {"peak": peak, "entries": entries}
    dw: dict[tuple[str, str], list[float]] = {}
    for c, z, s in dwell:
        dw.setdefault((c, z), []).append(s)
    for (c, z), vals in dw.items():
        cam(c)["zones"].setdefault(z, {})["dwell_s"] = {
            "p50": _pct(vals, 50),
            "p85": _pct(vals, 85),
            "n": len(vals),
        }
    sp: dict[tuple[str, str], list[float]] = {}
    for c, src, v in speeds:
        sp.setdefault((c, src), []).append(v)
    for (c, src), vals in sp.items():
        cam(c)["speeds"][src] = {"p50_kmh": _pct(vals, 50), "p85_kmh": _pct(vals, 85), "n": len(vals)}
    for c, line, d, h, t0, t1, pred, mae, mape, n in fc:
        cam(c)["forecasts"].setdefault(line, {}).setdefault(d, []).append(
            {
                "horizon_min": h,
                "from": t0,
                "to": t1,
                "expected": round(pred, 1),
                "backtest": {
                    "mae": None if mae is None else round(mae, 2),
                    "mape": None if mape is None else round(mape, 1),
                    "n": n,
                },
            }
        )
    return {"cameras": cams}


register_summary_section("analytics", analytics_section)
