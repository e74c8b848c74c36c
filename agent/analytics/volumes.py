"""Line volumes over a window (``edge-agent counts``, ``/api/counts``): closed bins plus raw tails.

The closed 15-minute bins (``volume_bins``) answer for the time they cover when the asked bin length
is a multiple of theirs: a month is a few thousand rows instead of millions of crossings, and bins
outlive the raw crossings that retention prunes. The crossings answer for the rest: the start of
the window when it is not on a bin boundary, and each camera's last stored bin onwards (that bin may
still grow after a restart, and the open bin has no row yet). Both are grouped in SQLite.
"""

from __future__ import annotations

import sqlite3

from agent.timefmt import iso_utc

_BIN_OF = "(CAST(strftime('%s', substr({col}, 1, 19)) AS INTEGER) / :bin) * :bin"
RAW_SQL = (
    f"SELECT {_BIN_OF.format(col='ts')} AS b, camera, line, direction, class, count(*) FROM crossings"
    " WHERE camera = :cam AND ts >= :lo AND ts < :hi GROUP BY b, camera, line, direction, class"
)
BINS_SQL = (
    f"SELECT {_BIN_OF.format(col='bin_start')} AS b, camera, line, direction, class, sum(count)"
    " FROM volume_bins WHERE camera = :cam AND bin_s = :stored AND bin_start >= :lo AND bin_start < :hi"
    " GROUP BY b, camera, line, direction, class"
)
_END = "9999"  # sorts after every ISO-8601 time


def distinct_cameras(conn: sqlite3.Connection) -> list[str]:
    """The cameras in ``crossings``, one index seek each (not a read of every row)."""
    q = (
        "WITH RECURSIVE c(cam) AS (SELECT min(camera) FROM crossings UNION ALL"
        " SELECT (SELECT min(camera) FROM crossings WHERE camera > c.cam) FROM c WHERE c.cam IS NOT NULL)"
        " SELECT cam FROM c WHERE cam IS NOT NULL"
    )
    return [r[0] for r in conn.execute(q)]


def volumes_plan_sql(since_iso: str, bin_s: int, camera: str | None) -> dict[str, tuple[str, dict]]:
    """The queries :func:`volumes` runs for each camera, with example parameters (for EXPLAIN)."""
    args = {"bin": bin_s, "cam": camera or "cam", "lo": since_iso, "hi": _END, "stored": 900}
    return {
        "cameras": ("SELECT min(camera) FROM crossings WHERE camera > :cam", args),
        "closed bins": (BINS_SQL, args),
        "crossings after them": (RAW_SQL, args),
    }


def _stored_bin(conn: sqlite3.Connection, bin_s: int) -> int | None:
    """The length of the stored bins when there is one and it divides ``bin_s``."""
    sizes = [r[0] for r in conn.execute("SELECT DISTINCT bin_s FROM volume_bins")]
    return sizes[0] if len(sizes) == 1 and bin_s % sizes[0] == 0 else None


def volumes(conn: sqlite3.Connection, since_ts: float, bin_s: int, camera: str | None = None) -> list[dict]:
    """Crossings since ``since_ts`` grouped into UTC-aligned bins of ``bin_s`` seconds."""
    since_iso = iso_utc(since_ts)
    stored = _stored_bin(conn, bin_s)
    last: dict[str, str] = {}
    if stored is not None:
        q = "SELECT camera, max(bin_start) FROM volume_bins WHERE bin_s = ? GROUP BY camera"
        last = dict(conn.execute(q, (stored,)).fetchall())
    out: dict[tuple, int] = {}

    def add(sql: str, **args: object) -> None:
        for b, cam, line, d, cls, n in conn.execute(sql, {"bin": bin_s, "stored": stored, **args}):
            key = (int(b), cam, line, d, cls)
            out[key] = out.get(key, 0) + int(n)

    for cam in [camera] if camera else distinct_cameras(conn):
        end = last.get(cam)
        if stored is None or end is None or end <= since_iso:
            add(RAW_SQL, cam=cam, lo=since_iso, hi=_END)
            continue
        first_full = iso_utc(-(-since_ts // stored) * stored)  # the first bin wholly in the window
        add(RAW_SQL, cam=cam, lo=since_iso, hi=first_full)
        add(BINS_SQL, cam=cam, lo=first_full, hi=end)
        add(RAW_SQL, cam=cam, lo=end, hi=_END)
    return [
        {
            "bin_start": iso_utc(b),
            "bin_minutes": bin_s / 60,
            "camera": cam,
            "line": line,
            "direction": d,
            "class": cls,
            "count": n,
        }
        for (b, cam, line, d, cls), n in sorted(out.items())
    ]
