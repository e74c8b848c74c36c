"""The rows the NGSI-LD encoder needs, read from the agent's database (read-only is enough)."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from typing import Any

import numpy as np

from agent.ngsi_ld import encode


def _table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        is not None
    )


def _bin_row(row: tuple) -> dict[str, Any]:
    """One ``volume_bins`` row (camera, line, direction, class, bin_start, bin_s, count, coverage_s)."""
    c, ln, d, cls, s, bs, n, cov = row
    return {
        "camera": c,
        "line": ln,
        "direction": d,
        "class": cls,
        "start": s,
        "seconds": int(bs),
        "count": int(n),
        "coverage": (cov / bs) if bs else 0.0,
    }


def volume_bins(conn: sqlite3.Connection, since: str, until: str) -> list[dict[str, Any]]:
    """Completed volume bins that end in ``(since, until]``."""
    if not _table(conn, "volume_bins"):
        return []
    rows = conn.execute(
        "SELECT camera, line, direction, class, bin_start, bin_s, count, coverage_s FROM volume_bins"
        " WHERE strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds') > ?"
        " AND strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds') <= ?"
        " ORDER BY bin_start, camera, line, direction, class",
        (since, until),
    ).fetchall()
    return [_bin_row(r) for r in rows]


_END = "strftime('%Y-%m-%dT%H:%M:%fZ', bin_start, '+' || bin_s || ' seconds')"


def changed_volume_bins(
    conn: sqlite3.Connection, mark: int | None, since: str, until: str
) -> tuple[list[dict[str, Any]], int | None]:
    """The volume bins changed after the change number ``mark`` (``volume_bins.change_seq``) that have
    ended by ``until``, whole (every row of each such bin), and the new mark (#14: a bin committed
    after the sink's clock passed its end, or changed again, is still exported; selecting by end time
    lost it).

    The mark stops before the first changed bin still in progress (flushed at a shutdown and
    continued after the restart): it is exported once it has ended or changed. ``mark`` None (the
    first run, or a sink that kept only a time cursor): bins that ended by ``since`` count as exported.
    """
    if not _table(conn, "volume_bins"):
        return [], mark
    cols = {r[1] for r in conn.execute("PRAGMA table_info(volume_bins)")}
    if "change_seq" not in cols:  # a database the analytics migration has not reached
        return volume_bins(conn, since, until), mark
    new_mark = mark or 0
    keys: dict[tuple[str, str, int], None] = {}
    for cam, start, bin_s, change, end in conn.execute(
        f"SELECT camera, bin_start, bin_s, change_seq, {_END} FROM volume_bins WHERE change_seq > ? ORDER BY change_seq",
        (mark or 0,),
    ):
        if end > until:
            break  # in progress: wait for it (and for what changed after it)
        new_mark = change
        if mark is None and end <= since:
            continue
        keys[(cam, start, bin_s)] = None
    out = []
    for cam, start, bin_s in sorted(keys, key=lambda k: (k[1], k[0], k[2])):
        out += [
            _bin_row(r)
            for r in conn.execute(
                "SELECT camera, line, direction, class, bin_start, bin_s, count, coverage_s FROM volume_bins"
                " WHERE camera = ? AND bin_start = ? AND bin_s = ? ORDER BY line, direction, class",
                (cam, start, bin_s),
            )
        ]
    return out, new_mark


def zone_occupancy(conn: sqlite3.Connection, since: str, until: str) -> dict[tuple[str, str, str], float]:
    """``(camera, zone, bin start) -> mean objects in the zone over the observed part of the bin``."""
    if not _table(conn, "zone_bins"):
        return {}
    return {
        (c, z, s): (occ / cov if cov else 0.0)
        for c, z, s, occ, cov in conn.execute(
            "SELECT camera, zone, bin_start, occupancy_s, coverage_s FROM zone_bins WHERE bin_start >= ? AND bin_start < ?",
            (since, until),
        )
    }


def bin_speeds(conn: sqlite3.Connection, bins: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """``(camera, bin start) -> mean speed (km/h)`` of the speeds measured inside each bin."""
    if not bins or not _table(conn, "speeds"):
        return {}
    out: dict[tuple[str, str], float] = {}
    for cam, start, seconds in sorted({(b["camera"], b["start"], b["seconds"]) for b in bins}):
        t0 = encode._parse(start)
        v = conn.execute(
            "SELECT AVG(speed_kmh) FROM speeds WHERE camera = ? AND ts >= ? AND ts < ?",
            (cam, start, encode._iso(t0 + seconds)),
        ).fetchone()[0]
        if v is not None:
            out[(cam, start)] = v
    return out


def traffic(
    conn: sqlite3.Connection,
    cfg: Any,
    since: str,
    until: str,
    unit: encode.Unit,
    *,
    bins: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """TrafficFlowObserved entities of the bins that ended in ``(since, until]``, or of ``bins`` (rows
    as :func:`volume_bins` gives them, e.g. from :func:`changed_volume_bins`).

    Occupancy comes from a zone: the zone named like the line, else the camera's only zone."""
    small = getattr(getattr(cfg, "privacy", None), "small_counts", None)
    rows = volume_bins(conn, since, until) if bins is None else bins
    vehicles = [b for b in rows if b["class"] in encode.VEHICLE_TYPES]
    bins, declared = protect(vehicles, small, conn)  # people are never sent as traffic flow
    directions: dict[tuple[str, str], tuple[str, str]] = {}
    zone_of: dict[tuple[str, str], str] = {}
    for cam in getattr(cfg, "cameras", []) or []:
        a = getattr(cam, "analytics", None)
        if a is None:
            continue
        zones = [z.name for z in a.zones]
        for ln in a.lines:
            directions[(cam.name, ln.name)] = tuple(ln.directions)
            if ln.name in zones:
                zone_of[(cam.name, ln.name)] = ln.name
            elif len(zones) == 1:
                zone_of[(cam.name, ln.name)] = zones[0]
    first = min([b["start"] for b in bins] or [until])
    occ_z = zone_occupancy(conn, first, encode._iso(encode._parse(until) + 1))
    occupancy = {
        (c, ln, s): occ_z[(c, zone_of[(c, ln)], s)]
        for (c, ln) in zone_of
        for s in {b["start"] for b in bins if b["camera"] == c and b["line"] == ln}
        if (c, zone_of[(c, ln)], s) in occ_z
    }
    return encode.traffic_flow_entities(
        bins,
        unit=unit,
        directions=directions,
        occupancy=occupancy,
        speeds=bin_speeds(conn, bins),
        privacy=declared,
        merged_class=getattr(small, "merge_class", None),
    )


def protect(
    bins: list[dict[str, Any]], small: Any, conn: sqlite3.Connection
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Small-count protection (``privacy.small_counts``) of the bins before they leave the unit, the
    same rule as the summaries' (:func:`agent.privacy.smallcount.protect_bins`); the local database
    keeps the true counts. Returns the bins and the declaration (None when protection is off).

    In ``dp`` mode each bin's noise is drawn from a generator seeded by the bin's key and a secret
    kept in the unit's database, so exporting or re-sending the same bin gives the same noisy value:
    averaging repeated answers cannot strip the noise. A count the noise makes negative is sent as 0
    (the data model's ``intensity`` cannot be negative), which the declaration says."""
    from agent.privacy.smallcount import protect_bins

    if small is None or small.mode == "off":
        return bins, None
    if small.mode != "dp":
        return protect_bins(bins, small)
    secret = _dp_secret(conn)
    out: list[dict[str, Any]] = []
    decl: dict[str, Any] = {}
    for b in bins:
        key = f"{secret}:{b['camera']}:{b['line']}:{b['direction']}:{b['class']}:{b['start']}:{b['seconds']}"
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        (pb,), decl = protect_bins([b], small, rng=np.random.default_rng(seed))
        pb["count"] = max(0, pb["count"])
        out.append(pb)
    decl = dict(decl or protect_bins([], small)[1])
    decl["note"] = (decl.get("note", "") + "; in NGSI-LD a negative noisy count is sent as 0").lstrip("; ")
    return out, decl


def _dp_secret(conn: sqlite3.Connection) -> str:
    """The unit's secret for seeding per-bin noise (made once; a read-only connection that finds none
    gets a fresh random one, so its noise is simply not repeatable)."""
    try:
        row = conn.execute("SELECT value FROM sync_state WHERE key = 'dp_secret'").fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is not None:
        return str(row[0])
    value = secrets.randbits(62)
    try:
        conn.execute("INSERT OR IGNORE INTO sync_state (key, value) VALUES ('dp_secret', ?)", (value,))
        conn.commit()
        return str(conn.execute("SELECT value FROM sync_state WHERE key = 'dp_secret'").fetchone()[0])
    except sqlite3.Error:
        return str(value)


def air_quality(
    conn: sqlite3.Connection, cfg: Any, since: str, until: str, unit: encode.Unit, *, partial: bool = False
) -> list[dict[str, Any]]:
    """AirQualityObserved entities for every complete UTC hour in ``[since, until)`` of every PM sensor;
    with ``partial`` also the hours the range only overlaps, e.g. the current one (marked by its
    ``reliability``; re-sending it later is an upsert of the same id)."""
    if not _table(conn, "readings"):
        return []
    from firmware_bridge import aqi as aqi_mod
    from firmware_bridge import summary as fs

    # the AQI keys are on the PM drivers' config models only; other sensors get the defaults
    tables = {
        s.name: (getattr(s, "aqi_table", aqi_mod.DEFAULT_TABLE), getattr(s, "aqi_nowcast", True))
        for s in getattr(cfg, "sensors", []) or []
    }
    t0 = encode._parse(since)
    t1 = encode._parse(until)
    if partial:
        first, last = t0 - t0 % 3600, t1 - t1 % 3600 + (3600 if t1 % 3600 else 0)
    else:
        first, last = t0 - t0 % 3600 + (3600 if t0 % 3600 else 0), t1 - t1 % 3600
    sensors = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT sensor FROM readings WHERE metric IN ('pm2_5', 'pm10') AND ts >= ? AND ts < ?",
            (encode._iso(first), encode._iso(last)),
        )
    ]
    rows = []
    for sensor in sensors:
        table = tables.get(sensor, (aqi_mod.DEFAULT_TABLE, True))[0]
        n = int((last - first) // 3600)
        if n <= 0:
            continue
        # each hour's mean plus the 11 before it, for that hour's NowCast
        series = {m: fs.hourly_means(conn, sensor, m, last, n + 11) for m in ("pm2_5", "pm10")}
        for i in range(n):  # i = 0: the latest complete hour
            h25, h10 = series["pm2_5"][i], series["pm10"][i]
            conc = {}
            for m, p in (("pm2_5", "pm25"), ("pm10", "pm10")):
                conc[m] = aqi_mod.nowcast([h["mean"] for h in series[m][i : i + 12]], p)
            a = None
            if conc["pm2_5"] is not None or conc["pm10"] is not None:
                a = aqi_mod.aqi(conc["pm2_5"], conc["pm10"], table) | {"basis": "nowcast"}
            rows.append(
                {
                    "sensor": sensor,
                    "start": h25["start"],
                    "pm2_5": h25["mean"],
                    "pm10": h10["mean"],
                    "minutes": max(h25["minutes"], h10["minutes"]),
                    "aqi": a,
                    "location": None,
                    "end": min(encode._parse(h25["start"]) + 3600, t1),  # a partial hour ends now
                }
            )
    return encode.air_quality_entities(rows, unit=unit)


def unit_of(conn: sqlite3.Connection, cfg: Any | None) -> encode.Unit:
    """The observing unit: from the config, else from the database (its outbox and GPS readings)."""
    site = device = None
    lat = lon = None
    if cfg is not None:
        site, device = cfg.device.site, cfg.device.id
        lat, lon = cfg.device.latitude, cfg.device.longitude
    else:
        try:
            row = conn.execute(
                "SELECT p.payload FROM outbox_payload p ORDER BY p.seq DESC LIMIT 1"
            ).fetchone()
            if row:
                doc = json.loads(row[0])
                site, device = doc.get("site"), doc.get("device")
        except sqlite3.Error:
            pass
    if lat is None or lon is None:
        try:
            got = dict(
                conn.execute(
                    "SELECT metric, AVG(value) FROM readings WHERE metric IN ('latitude', 'longitude') AND quality = 0"
                    " AND ts >= (SELECT MAX(ts) FROM readings WHERE metric = 'latitude') GROUP BY metric"
                ).fetchall()
            )
            if "latitude" in got and "longitude" in got:
                lat, lon = got["latitude"], got["longitude"]
        except sqlite3.Error:
            pass
    return encode.Unit(site or "default", device or "unit", lat, lon)
