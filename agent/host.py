"""Readings of the unit's own health: CPU temperature, load, memory, disk, database, clock.

Each reading is best effort: what a platform cannot provide is ``None``, never an exception.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

_START_MONO = time.monotonic()


def agent_uptime_s() -> float:
    return round(time.monotonic() - _START_MONO, 1)


def cpu_temp_c() -> float | None:
    """The hottest thermal zone (Raspberry Pi: cpu-thermal; Jetson: several zones), or None."""
    best = None
    for zone in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            v = int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
        if -40 < v < 150:
            best = v if best is None else max(best, v)
    return round(best, 1) if best is not None else None


def memory_mb() -> tuple[float | None, float | None]:
    """(available, total) in MiB from /proc/meminfo."""
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, _, v = line.partition(":")
            info[k] = int(v.split()[0])
        return round(info["MemAvailable"] / 1024, 1), round(info["MemTotal"] / 1024, 1)
    except (OSError, KeyError, ValueError, IndexError):
        return None, None


def system_uptime_s() -> float | None:
    try:
        return round(float(Path("/proc/uptime").read_text().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return None


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only `modes` (0: read only) matters to us, the rest is room
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 512)]


def clock_synced() -> bool:
    """True when the kernel says the clock is synchronised (NTP/chrony/GPS), via adjtimex(2).

    adjtimex returns TIME_ERROR (5) while the clock is unsynchronised. Unknown platforms: False.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        tx.modes = 0
        state = libc.adjtimex(ctypes.byref(tx))
        return 0 <= state < 5
    except (OSError, AttributeError):
        return False


def db_file(conn: sqlite3.Connection) -> str | None:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or None
    return None


def db_used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages in use (what the storage budget counts; freed pages are reused, not counted)."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    count = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((count - free) * page)


def db_file_bytes(path: str | None) -> int | None:
    if not path:
        return None
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(path + suffix).st_size
        except OSError:
            pass
    return total


def disk_free_mb(path: str | None) -> float | None:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)) if path else ".")
        return round(st.f_bavail * st.f_frsize / 2**20, 1)
    except OSError:
        return None


def collect(conn: sqlite3.Connection) -> dict[str, Any]:
    """The health readings (the ``health`` summary section and the health message share this)."""
    path = db_file(conn)
    avail, total = memory_mb()
    try:
        load: tuple[float | None, ...] = os.getloadavg()
    except OSError:
        load = (None, None, None)
    try:
        backlog = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        pruned = dict(conn.execute("SELECT key, value FROM sync_state WHERE key LIKE 'pruned_%'"))
    except sqlite3.OperationalError:  # outbox tables not created (a read-only copy of another store)
        backlog, pruned = None, {}
    return {
        "cpu_temp_c": cpu_temp_c(),
        "load_1m": round(load[0], 2) if load[0] is not None else None,
        "load_5m": round(load[1], 2) if load[1] is not None else None,
        "mem_available_mb": avail,
        "mem_total_mb": total,
        "disk_free_mb": disk_free_mb(path),
        "db_bytes": db_file_bytes(path),
        "db_used_bytes": db_used_bytes(conn),
        "outbox_backlog": backlog,
        "pruned": {k[len("pruned_") :]: v for k, v in pruned.items()},
        "uptime_s": agent_uptime_s(),
        "system_uptime_s": system_uptime_s(),
        "clock_synced": clock_synced(),
    }
