"""The privacy report: what the unit stores, for how long, what leaves it, and whether a limit is exceeded.

Built from the config and the database (opened read-only), plus the live mask counters when the
agent runs. Shown by ``edge-agent privacy report``, ``GET /api/privacy`` and ``edge-agent doctor``.
Each finding is ``ok``, ``warn`` or ``fail``; a ``fail`` (a limit in ``[privacy.limits]`` exceeded)
makes the command exit 1.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

from agent.privacy.smallcount import declaration

SCHEMA = "edge-agent/privacy-report/1"

# Raw rows that concern people or vehicles one by one: (table, time column, what it is).
RAW_TABLES = (
    ("detections", "ts", "raw detections (label, score, box, track id) per frame"),
    ("tracks", "first_ts", "tracks (one row per tracked object: class, first/last seen)"),
    ("crossings", "ts", "line crossings (one row per object crossing a counting line)"),
    ("zone_visits", "enter_ts", "zone visits (one row per object: enter, exit, dwell)"),
    ("speeds", "ts", "speeds (one row per measured object)"),
    ("readings", "ts", "raw sensor readings"),
)
# Aggregates: counts per bin, no single object.
AGGREGATE_TABLES = (
    ("volume_bins", "bin_start", "15-minute volumes per line, direction and class"),
    ("zone_bins", "bin_start", "zone occupancy per bin"),
    ("inference_stats", "ts_end", "per-camera inference statistics"),
    ("forecasts", "issued_ts", "volume forecasts"),
)
# Images held in the database or on disk by any part of the agent: (table, time column). None
# today (snapshots are rendered in memory per request); a part that stores event images adds its
# table here so the report and the limits cover it.
IMAGE_TABLES: list[tuple[str, str]] = [("event_images", "ts"), ("images", "ts"), ("incidents", "start_ts")]


def _parse(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _held(conn: sqlite3.Connection, table: str, col: str, now: float) -> dict[str, Any]:
    where = " WHERE snapshot IS NOT NULL" if table == "incidents" else ""  # rows that hold an image
    n, oldest, newest = conn.execute(
        f"SELECT count(*), min({col}), max({col}) FROM {table}{where}"
    ).fetchone()
    t = _parse(oldest)
    return {
        "rows": int(n),
        "oldest": oldest,
        "newest": newest,
        "oldest_age_h": None if t is None else round((now - t) / 3600, 2),
    }


def stored(db_path: Path, now: float | None = None) -> dict[str, Any]:
    """What the database holds: raw tables, aggregates and images, each with rows and the oldest row."""
    from agent.store.db import connect

    now = time.time() if now is None else now
    out: dict[str, Any] = {"database": str(db_path), "exists": db_path.exists(), "raw": {}, "aggregates": {}}
    out["images"] = {}
    if not db_path.exists():
        return out
    out["size_mb"] = round(db_path.stat().st_size / 1e6, 2)
    conn = connect(db_path, readonly=True)
    try:
        have = _tables(conn)
        for group, spec in (("raw", RAW_TABLES), ("aggregates", AGGREGATE_TABLES)):
            for table, col, what in spec:
                if table in have:
                    out[group][table] = {"what": what, **_held(conn, table, col, now)}
        for table, col in IMAGE_TABLES:
            if table in have:
                held = _held(conn, table, col, now)
                if (
                    held["rows"] or table != "incidents"
                ):  # every database has the table; only kept snapshots count
                    out["images"][table] = held
    finally:
        conn.close()
    return out


def _leaves(cfg: Any) -> dict[str, Any]:
    m = cfg.mqtt
    return {
        "mqtt_enabled": bool(m.enabled),
        "broker": getattr(m, "host", None) if m.enabled else None,
        "summaries_every_s": cfg.summary.interval_s,
        "messages": [
            "summary (counts, bins, occupancy, speed percentiles, forecasts, sensor statistics)",
            "health",
            "status",
            "events",
            "command replies",
        ],
        "never": ["images", "boxes", "track ids", "raw detections"],
        "small_counts": declaration(cfg.privacy.small_counts),
    }


def _images(cfg: Any) -> dict[str, Any]:
    served = bool(cfg.api.enabled and cfg.privacy.snapshots)
    return {
        "snapshots_served": served,
        "where": f"{cfg.api.bind}:{cfg.api.port}" if served else None,
        "network_reachable": served and cfg.api.bind not in ("127.0.0.1", "::1", "localhost"),
        "blur": cfg.privacy.blur,
        "blur_labels": list(cfg.privacy.blur_labels),
        "face_model": cfg.privacy.face_model if cfg.privacy.blur == "faces" else None,
        "cameras": {
            c.name: {"masks": [{"name": mk.name, "mode": mk.mode} for mk in c.masks]} for c in cfg.cameras
        },
    }


def build_report(
    cfg: Any, *, live_masks: dict[str, Any] | None = None, now: float | None = None
) -> dict[str, Any]:
    """The privacy report of a unit.

    Args:
        cfg: the ``AgentConfig``.
        live_masks: per camera, :meth:`~agent.privacy.masks.MaskSet.status` of the running agent.
        now: the time to measure ages against (default: now).

    Returns:
        A JSON-able dict with ``stored``, ``retention``, ``leaves``, ``images``, ``findings`` and
        ``ok`` (False when a finding fails).
    """
    now = time.time() if now is None else now
    st = stored(Path(cfg.storage.path), now)
    images = _images(cfg)
    if live_masks:
        for cam, s in live_masks.items():
            images["cameras"].setdefault(cam, {})["live"] = s
    oldest = _oldest_raw(st)
    findings = [
        *_image_findings(cfg, images, st),
        _retention_finding(cfg.privacy.limits.max_raw_age_h, oldest),
        _small_counts_finding(cfg.privacy.small_counts),
    ]
    return {
        "schema": SCHEMA,
        "device": cfg.device.id,
        "ts": dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "stored": st,
        "retention": _retention(cfg, st, oldest),
        "leaves": _leaves(cfg),
        "images": images,
        "findings": findings,
        "ok": not any(f["status"] == "fail" for f in findings),
    }


def _finding(status: str, what: str, fix: str | None = None) -> dict[str, Any]:
    return {"status": status, "what": what, **({"fix": fix} if fix else {})}


def _image_findings(cfg: Any, images: dict[str, Any], st: dict[str, Any]) -> list[dict[str, Any]]:
    """Served snapshots against privacy.limits.images, images held in the database, static masks."""
    lim = cfg.privacy.limits
    out = [_snapshot_finding(cfg, images)]
    for table, h in st["images"].items():
        if h["rows"]:
            out.append(
                _finding(
                    "fail" if lim.images == "forbidden" else "warn",
                    f"{h['rows']} image(s) held in {table}, oldest {h['oldest']}",
                    "delete them, or allow images in privacy.limits.images",
                )
            )
    masked = [c for c, v in images["cameras"].items() if v.get("masks")]
    out.append(
        _finding(
            "ok",
            f"static masks on {len(masked)} of {len(cfg.cameras)} camera(s)"
            + (f": {', '.join(masked)}" if masked else ""),
        )
    )
    return out


def _snapshot_finding(cfg: Any, images: dict[str, Any]) -> dict[str, Any]:
    if not images["snapshots_served"]:
        return _finding("ok", "no camera image can be served (snapshots off)")
    lim, blur = cfg.privacy.limits, cfg.privacy.blur
    where = f"served on {images['where']}" + (
        " (reachable from the network)" if images["network_reachable"] else ""
    )
    if lim.images == "forbidden":
        return _finding(
            "fail",
            f"camera images are enabled: snapshots {where}, limit is images = forbidden",
            "set privacy.snapshots = false (or api.enabled = false)",
        )
    if lim.images == "blurred-only" and blur == "off":
        return _finding(
            "fail",
            f"camera images are enabled without blur: snapshots {where} with privacy.blur = off",
            'set privacy.blur = "people" or "faces", or privacy.snapshots = false',
        )
    return _finding(
        "ok" if blur != "off" else "warn",
        f"camera images are enabled: snapshots {where}, blur = {blur}",
        None if blur != "off" else 'set privacy.blur = "people" or "faces"',
    )


def _oldest_raw(st: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The table holding the oldest raw row or image, and its stats (None: no raw rows)."""
    ages = [
        (t, h)
        for t, h in {**st["raw"], **st["images"]}.items()
        if h["rows"] and h["oldest_age_h"] is not None
    ]
    return max(ages, key=lambda x: x[1]["oldest_age_h"], default=None)


def _retention_finding(
    max_raw_age_h: float | None, oldest: tuple[str, dict[str, Any]] | None
) -> dict[str, Any]:
    if oldest is None:
        return _finding("ok", "no raw rows held")
    table, h = oldest
    if max_raw_age_h is not None and h["oldest_age_h"] > max_raw_age_h:
        return _finding(
            "fail",
            f"retention exceeded: the oldest raw row ({table}, {h['oldest']}) is "
            f"{h['oldest_age_h']:.1f} h old, limit privacy.limits.max_raw_age_h = {max_raw_age_h:g} h",
            "prune old raw rows (lower storage.max_db_mb, or storage.store_detections = false), "
            "or raise the limit",
        )
    return _finding(
        "ok",
        f"oldest raw row: {table} {h['oldest']} ({h['oldest_age_h']:.1f} h)"
        + ("" if max_raw_age_h is None else f", limit {max_raw_age_h:g} h"),
    )


def _small_counts_finding(sc: Any) -> dict[str, Any]:
    if sc.mode == "off":
        return _finding(
            "warn",
            "small-count protection is off: counts of 1 or 2 people leave the unit",
            'set privacy.small_counts.mode = "merge" (or suppress, dp)',
        )
    return _finding("ok", f"small counts protected before they leave: {sc.mode}")


def _retention(cfg: Any, st: dict[str, Any], oldest: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    """How long raw rows are kept: the budget, the age limit, the oldest raw row, detection and image."""
    oldest_det = st["raw"].get("detections", {})
    return {
        "db_budget_mb": cfg.storage.max_db_mb,
        "rule": "over the budget the oldest raw rows that a summary already covers are pruned first",
        "store_detections": cfg.storage.store_detections,
        "max_raw_age_h": cfg.privacy.limits.max_raw_age_h,
        "oldest_raw": None
        if oldest is None
        else {"table": oldest[0], "ts": oldest[1]["oldest"], "age_h": oldest[1]["oldest_age_h"]},
        "oldest_detection": oldest_det.get("oldest"),
        "oldest_image": min((h["oldest"] for h in st["images"].values() if h["oldest"]), default=None),
    }


def render_text(rep: dict[str, Any]) -> str:
    """The report for a terminal."""
    st, ret, lv, im = rep["stored"], rep["retention"], rep["leaves"], rep["images"]
    lines = [f"privacy report of {rep['device']} at {rep['ts']}", ""]
    lines.append(
        f"Stored in {st['database']}"
        + (f" ({st.get('size_mb')} MB)" if st["exists"] else " (not created yet)")
    )
    for group in ("raw", "aggregates", "images"):
        for table, h in st[group].items():
            age = "" if h["oldest_age_h"] is None else f", oldest {h['oldest']} ({h['oldest_age_h']:.1f} h)"
            lines.append(f"  {group:10} {table:16} {h['rows']:>9} rows{age}")
    if not st["images"]:
        lines.append("  images     none held (snapshots are rendered in memory, per request)")
    lines.append(
        f"Kept: database budget {ret['db_budget_mb']:g} MB ({ret['rule']}); raw age limit "
        + ("none" if ret["max_raw_age_h"] is None else f"{ret['max_raw_age_h']:g} h")
    )
    lines.append(
        f"  oldest raw detection: {ret['oldest_detection'] or 'none'}; oldest image: {ret['oldest_image'] or 'none'}"
    )
    sc = lv["small_counts"]
    lines.append(
        "Leaves the unit: "
        + (
            "MQTT to " + str(lv["broker"])
            if lv["mqtt_enabled"]
            else "nothing yet (mqtt disabled; summaries wait in the outbox)"
        )
    )
    lines.append(f"  {', '.join(lv['messages'])}; never {', '.join(lv['never'])}")
    lines.append(
        f"  small counts: {sc['mode']}"
        + (" k " + ", ".join(f"{c}={k}" for c, k in sc["k"].items()) if "k" in sc else "")
        + (f" epsilon={sc['epsilon']}" if "epsilon" in sc else "")
    )
    lines.append(
        f"Images: snapshots {'served on ' + im['where'] if im['snapshots_served'] else 'off'}; blur = {im['blur']}"
    )
    for cam, v in im["cameras"].items():
        ms = ", ".join(f"{m['name']} ({m['mode']})" for m in v.get("masks", [])) or "no masks"
        live = v.get("live")
        extra = f"; {live['detections_dropped']} detection(s) dropped in masks" if live else ""
        lines.append(f"  camera {cam}: {ms}{extra}")
    lines.append("")
    for f in rep["findings"]:
        lines.append(f"{f['status']:4}  {f['what']}")
        if f.get("fix") and f["status"] != "ok":
            lines.append(f"      fix: {f['fix']}")
    return "\n".join(lines)
