"""The "analytics" summary section: counts, bins, occupancy, speeds and forecasts. Never boxes or images.

Bins (volume and zone figures) are sent by change, not by time (#14): every bin whose rows were
inserted or updated after the mark of the last committed summary (``change_seq`` above
``sync_state['summary_bins_mark']``) goes out whole in the next summary, with its ``rev`` (its
highest change number: a later version of a bin has a higher one) and ``late`` (it ended before
this window began). A bin committed after its window was summarised, or changed again, is sent in
the next summary; nothing committed is skipped and a restart resumes at the mark.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.analytics.store import SUMMARY_MARK
from agent.sections import change_cursor, summary_mark

#: most changed bin rows one summary takes (a backlog, e.g. after an upgrade, drains over the next ones)
MAX_BIN_CHANGES = 2000
_END = "strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds')"


def _pct(vals: list[float], p: float) -> float | None:
    if not vals:
        return None
    vals = sorted(vals)
    k = (len(vals) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(vals) - 1)
    return round(vals[lo] + (vals[hi] - vals[lo]) * (k - lo), 1)


def _changes(conn: sqlite3.Connection, mark: int) -> list[tuple[str, str, int, int]]:
    """(camera, bin_start, bin_s, change_seq) of the first bin rows changed after ``mark``."""
    return list(
        conn.execute(
            "SELECT camera, bin_start, bin_s, change_seq FROM volume_bins WHERE change_seq > ?"
            " UNION ALL SELECT camera, bin_start, bin_s, change_seq FROM zone_bins WHERE change_seq > ?"
            " ORDER BY change_seq LIMIT ?",
            (mark, mark, MAX_BIN_CHANGES),
        )
    )


#: the mark after the bins :func:`analytics_section` sends on a snapshot
bins_cursor = change_cursor(_changes, 3)


def changed_bins(conn: sqlite3.Connection, mark: int, window_start: str) -> list[tuple[str, dict[str, Any]]]:
    """(camera, bin) of every bin changed after ``mark``, whole (all its lines, classes and zones)."""
    keys = sorted({(c, s, b) for c, s, b, _ in _changes(conn, mark)}, key=lambda k: (k[1], k[0]))
    out = []
    for cam, bstart, bin_s in keys:
        vol = conn.execute(
            f"SELECT line, direction, class, count, coverage_s, change_seq, {_END} FROM volume_bins"
            " WHERE camera = ? AND bin_start = ? AND bin_s = ? ORDER BY line, direction, class",
            (cam, bstart, bin_s),
        ).fetchall()
        zon = conn.execute(
            f"SELECT zone, peak, entries, occupancy_s, coverage_s, change_seq, {_END} FROM zone_bins"
            " WHERE camera = ? AND bin_start = ? AND bin_s = ? ORDER BY zone",
            (cam, bstart, bin_s),
        ).fetchall()
        rows = [r[4:] for r in vol] + [r[4:] for r in zon]
        b: dict[str, Any] = {
            "start": bstart,
            "minutes": bin_s // 60,
            "coverage": min(round(cov / bin_s, 3) for cov, _, _ in rows),
            "counts": {},
            "rev": max(ch for _, ch, _ in rows),
            "late": rows[0][2] <= window_start,
        }
        for line, d, cls, n, *_ in vol:
            if n:
                b["counts"].setdefault(line, {}).setdefault(d, {})[cls] = n
        if zon:
            b["zones"] = {
                z: {"peak": peak, "entries": entries, "occupancy_mean": round(occ / cov, 3) if cov else None}
                for z, peak, entries, occ, cov, *_ in zon
            }
        out.append((cam, b))
    return out


def analytics_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """Volumes per camera/line/direction/class in ``[start, end)``, the bins changed since the last
    summary (module docstring), zone peaks, speed percentiles and the latest forecasts with their
    backtest error."""
    try:
        q = _query(conn, start, end)
    except sqlite3.OperationalError:  # tables not created (analytics never ran on this database)
        return None
    if not (q["vol"] or q["bins"] or q["zones"] or q["speeds"] or q["fc"]):
        return None
    cams: dict[str, Any] = {}

    def cam(name: str) -> dict[str, Any]:
        return cams.setdefault(name, {"volumes": {}, "bins": [], "zones": {}, "speeds": {}, "forecasts": {}})

    for c, line, d, cls, n in q["vol"]:
        cam(c)["volumes"].setdefault(line, {}).setdefault(d, {})[cls] = n
    for c, b in q["bins"]:
        cam(c)["bins"].append(b)
    for c, z, peak, entries in q["zones"]:
        cam(c)["zones"][z] = {"peak": peak, "entries": entries}
    for (c, z), vals in _grouped(q["dwell"]).items():
        cam(c)["zones"].setdefault(z, {})["dwell_s"] = {
            "p50": _pct(vals, 50),
            "p85": _pct(vals, 85),
            "n": len(vals),
        }
    for (c, src), vals in _grouped(q["speeds"]).items():
        cam(c)["speeds"][src] = {"p50_kmh": _pct(vals, 50), "p85_kmh": _pct(vals, 85), "n": len(vals)}
    for c, line, d, h, t0, t1, pred, mae, mape, n in q["fc"]:
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


def _grouped(rows: list[Any]) -> dict[tuple[str, str], list[float]]:
    """(camera, key, value) rows -> the values of each (camera, key), in row order."""
    out: dict[tuple[str, str], list[float]] = {}
    for c, k, v in rows:
        out.setdefault((c, k), []).append(v)
    return out


def _query(conn: sqlite3.Connection, start: str, end: str) -> dict[str, list[Any]]:
    """The section's rows: volumes, changed bins, zone peaks, dwell times, speeds, latest forecasts."""
    return {
        "vol": list(
            conn.execute(
                "SELECT camera, line, direction, class, count(*) FROM crossings WHERE ts >= ? AND ts < ?"
                " GROUP BY camera, line, direction, class",
                (start, end),
            )
        ),
        "bins": changed_bins(conn, summary_mark(conn, SUMMARY_MARK), start),
        "zones": list(
            conn.execute(
                "SELECT camera, zone, max(peak), sum(entries) FROM zone_bins WHERE bin_start >= ? AND bin_start < ?"
                " GROUP BY camera, zone",
                (start, end),
            )
        ),
        "dwell": list(
            conn.execute(
                "SELECT camera, zone, dwell_s FROM zone_visits WHERE exit_ts >= ? AND exit_ts < ?",
                (start, end),
            )
        ),
        "speeds": list(
            conn.execute(
                "SELECT camera, source, speed_kmh FROM speeds WHERE ts >= ? AND ts < ?", (start, end)
            )
        ),
        "fc": list(
            conn.execute(
                "SELECT f.camera, f.line, f.direction, f.horizon_min, f.target_start, f.target_end, f.predicted,"
                " f.bt_mae, f.bt_mape, f.bt_n FROM forecasts f JOIN (SELECT camera, line, direction, max(issued_ts) AS it"
                " FROM forecasts WHERE issued_ts < ? GROUP BY camera, line, direction) l ON f.camera = l.camera AND"
                " f.line = l.line AND f.direction = l.direction AND f.issued_ts = l.it ORDER BY f.horizon_min",
                (end,),
            )
        ),
    }
