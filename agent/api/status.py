"""The status document of ``/api/status`` and ``edge-agent status``, with its health lights.

:func:`live_status` starts from ``Pipeline.status()`` (whatever the parts of the agent report:
cameras, models, writer, database, sync, sensors, analytics) and adds what a technician asks first:
one light per concern (camera, accelerator, sensors, broker, disk, clock) with the reason, disk
space, clock synchronisation and versions. :func:`offline_status` builds the same shape from the
database alone, for when the daemon is not running.

A light is ``ok``, ``warn``, ``bad`` or ``off`` (not configured), with a short ``why``.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.plugins import loaded as loaded_plugins

if TYPE_CHECKING:
    from agent.api.host import ApiHost

LIGHTS = ("camera", "accelerator", "sensors", "broker", "disk", "clock")
_RANK = {"off": 0, "ok": 1, "warn": 2, "bad": 3}


def _light(state: str, why: str, detail: str | None = None) -> dict[str, str]:
    """A status light: its state, a short why, and (optional) the details behind it."""
    out = {"state": state, "why": why}
    if detail:
        out["detail"] = detail
    return out


def jsonable(obj: Any) -> Any:
    """Make a status dict strictly JSON: NaN/inf -> None, unknown objects -> str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return jsonable(obj.item())
    return str(obj)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"agent": __version__, "python": platform.python_version()}
    for name, mod in (
        ("opencv", "cv2"),
        ("numpy", "numpy"),
        ("litert", "ai_edge_litert"),
        ("tflite_runtime", "tflite_runtime"),
    ):
        try:
            from importlib.metadata import PackageNotFoundError, version

            dist = {
                "cv2": "opencv-python-headless",
                "ai_edge_litert": "ai-edge-litert",
                "tflite_runtime": "tflite-runtime",
            }.get(mod, mod)
            out[name] = version(dist)
        except (ImportError, PackageNotFoundError):
            out[name] = None
    return out


_VERSIONS: dict[str, str | None] | None = None


def disk(path: Path) -> dict[str, Any]:
    target = path if path.exists() else path.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        u = shutil.disk_usage(target)
    except OSError as exc:
        return {"path": str(target), "error": str(exc)}
    return {
        "path": str(target),
        "total_bytes": u.total,
        "free_bytes": u.free,
        "free_pct": round(100 * u.free / u.total, 1) if u.total else None,
    }


def clock(pipeline: ApiHost | None = None) -> dict[str, Any]:
    synced = None
    try:
        from agent.host import clock_synced

        synced = clock_synced()
    except ImportError:
        pass
    out: dict[str, Any] = {"synced": synced, "utc": _now_iso(), "gps": None}
    sensors = pipeline.sensors if pipeline is not None else None
    if sensors is not None:
        try:
            out["gps"] = sensors.gps_clock()
        except Exception as exc:  # noqa: BLE001 - a status read must not fail
            out["gps"] = {"error": str(exc)}
    return out


def _now_iso() -> str:
    from agent.timefmt import iso_utc

    return iso_utc(time.time())


def lights(st: dict[str, Any], cfg: Any) -> dict[str, dict[str, str]]:
    out = {
        "camera": _camera_light(st),
        "accelerator": _accel_light(st, cfg),
        "sensors": _sensor_light(st, cfg),
        "broker": _broker_light(st, cfg),
        "disk": _disk_light(st, cfg),
        "clock": _clock_light(st),
    }
    return out


def _camera_light(st: dict[str, Any]) -> dict[str, str]:
    cams = st.get("cameras") or {}
    if not cams:
        return _light("off", "no camera configured")
    bad = [
        f"{n}: {c.get('state')}" + (f" ({c['last_error']})" if c.get("last_error") else "")
        for n, c in cams.items()
        if c.get("state") in ("down", "stopped", "stalled")
    ]
    warn = [
        f"{n}: {c.get('state')}" for n, c in cams.items() if c.get("state") in ("reconnecting", "starting")
    ]
    if bad:
        return _light("bad", "; ".join(bad))
    if warn:
        return _light("warn", "; ".join(warn))
    fps = ", ".join(f"{n} {c.get('fps') if c.get('fps') is not None else '-'} fps" for n, c in cams.items())
    return _light("ok", fps)


def _accel_light(st: dict[str, Any], cfg: Any) -> dict[str, str]:
    models, errors = st.get("models") or {}, st.get("model_errors") or {}
    if errors:
        return _light("bad", "; ".join(f"{m}: {e}" for m, e in errors.items()))
    if not models:
        return _light("off", "no model loaded")
    from agent.inference.runtime import accelerator_summary

    wanted = getattr(getattr(cfg, "inference", None), "accelerator", "auto")
    parts, details, state = [], [], "ok"
    for name, m in models.items():
        acc = m.get("accelerator")
        reasons = list(m.get("reasons") or [])
        parts.append(f"{name} on {accelerator_summary(str(acc), reasons)}")
        details += [f"{name}: {r}" for r in reasons]
        if wanted not in ("auto", "cpu") and acc != wanted:
            state = "warn"
        fb = m.get("fallback")
        if fb:  # lost while running: still counting, on a slower accelerator
            parts[-1] = f"{name} on {acc}: {fb.get('lost')} lost ({fb.get('reason')}), re-probing"
            state = "warn"
    return _light(state, "; ".join(parts), "\n".join(details) or None)


def _sensor_light(st: dict[str, Any], cfg: Any) -> dict[str, str]:
    sensors = st.get("sensors")
    if not sensors:
        return _light(
            "off",
            "no serial sensor configured" if not getattr(cfg, "sensors", None) else "sensors not reporting",
        )
    if "error" in sensors and not isinstance(sensors.get("error"), dict):
        return _light("bad", f"sensor service: {sensors['error']}")
    down = [
        f"{n}: {h.get('last_error') or 'disconnected'}"
        for n, h in sensors.items()
        if isinstance(h, dict) and not h.get("connected")
    ]
    if down:
        return _light("bad", "; ".join(down))
    # a line drops a few frames (the simulator's default noise is 5 % per fault kind): that is what the
    # checksums are for. Warn when a quarter of the frames are bad, not at every burst of noise
    noisy = [
        f"{n}: {h.get('frames_bad')} bad frames of {h['frames_bad'] + (h.get('frames_ok') or 0)}"
        for n, h in sensors.items()
        if isinstance(h, dict)
        and (h.get("frames_bad") or 0) >= 20
        and h["frames_bad"] > 0.25 * (h["frames_bad"] + (h.get("frames_ok") or 0))
    ]
    if noisy:
        return _light("warn", "; ".join(noisy))
    return _light("ok", f"{len(sensors)} connected")


def _broker_light(st: dict[str, Any], cfg: Any) -> dict[str, str]:
    sync = st.get("sync")
    if sync is None:
        return _light("off", "sync not running")
    if sync.get("error") and "enabled" not in sync:
        return _light("bad", f"sync: {sync['error']}")
    backlog = sync.get("backlog")
    if not sync.get("enabled"):
        return _light("off", f"MQTT disabled; {backlog} message(s) waiting in the outbox")
    if not sync.get("connected"):
        err = sync.get("last_error") or "not connected"
        return _light("bad", f"{sync.get('broker')}: {err}; backlog {backlog}")
    if backlog and backlog > 100:
        return _light("warn", f"connected to {sync.get('broker')}, backlog {backlog}")
    return _light("ok", f"connected to {sync.get('broker')}, backlog {backlog}")


def _disk_light(st: dict[str, Any], cfg: Any) -> dict[str, str]:
    d = st.get("disk") or {}
    if "free_bytes" not in d:
        return _light("warn", f"disk unknown: {d.get('error')}")
    free_mb = d["free_bytes"] / 2**20
    db = (st.get("database") or {}).get("size_bytes") or 0
    budget = getattr(getattr(cfg, "storage", None), "max_db_mb", None)
    why = disk_text(d, db, budget)
    if free_mb < 200 or (d.get("free_pct") or 100) < 3:
        return _light("bad", why)
    if (d.get("free_pct") or 100) < 10 or (budget and db > 0.9 * budget * 2**20):
        return _light("warn", why)
    return _light("ok", why)


def mib(n: float | None) -> str:
    """Sizes on the status page, the console and the lights: one unit, MiB (GiB from 10 GiB)."""
    if n is None:
        return "-"
    return f"{n / 2**30:.1f} GiB" if n >= 10 * 2**30 else f"{n / 2**20:.1f} MiB"


def disk_text(d: dict[str, Any], db_bytes: float | None, budget_mb: float | None) -> str:
    """The one way disk space is written: ``812.0 MiB free (41.2 %), database 3.1 MiB of 1024 MiB budget``."""
    why = f"{mib(d.get('free_bytes'))} free ({d.get('free_pct')} %), database {mib(db_bytes or 0)}"
    if budget_mb:
        why += f" of {budget_mb:g} MiB budget"
    return why


def _clock_light(st: dict[str, Any]) -> dict[str, str]:
    c = st.get("clock") or {}
    gps = c.get("gps") or {}
    if c.get("synced"):
        return _light("ok", "synchronised (kernel NTP status)")
    if gps.get("trusted"):
        return _light("ok", f"GPS time, offset {gps.get('offset_s')} s")
    if gps.get("trusted") is False:
        return _light("bad", f"clock differs from GPS by {gps.get('offset_s')} s")
    if c.get("synced") is None:
        return _light("warn", "synchronisation unknown on this platform")
    return _light("warn", "not synchronised (no NTP/GPS): timestamps may be off")


def overall(ls: dict[str, dict[str, str]]) -> str:
    worst = max((_RANK[v["state"]] for v in ls.values()), default=0)
    return {0: "ok", 1: "ok", 2: "warn", 3: "bad"}[worst]


def live_status(pipeline: ApiHost) -> dict[str, Any]:
    """The daemon's status: ``Pipeline.status()`` plus lights, disk, clock and versions."""
    global _VERSIONS
    st = dict(pipeline.status())
    cfg = pipeline.cfg
    now = time.time()
    engines = st.get("models") or {}
    for _name, cam in (st.get("cameras") or {}).items():
        m = engines.get(cam.get("model"))
        cam["accelerator"] = m.get("accelerator") if m else None
        ts = cam.get("last_frame_ts")
        cam["last_frame_age_s"] = round(now - ts, 1) if isinstance(ts, (int, float)) else None
        cam.setdefault("fps", None)
        cam.setdefault("latency_p50_ms", None)
        cam.setdefault("latency_p95_ms", None)
    st["disk"] = disk(Path(cfg.storage.path))
    st["clock"] = clock(pipeline)
    if _VERSIONS is None:
        _VERSIONS = versions()
    st["versions"] = _VERSIONS
    st["plugins"] = loaded_plugins()  # the config's plugin files, as imported
    st["running"] = True
    st["source"] = "daemon"
    st["lights"] = lights(st, cfg)
    st["overall"] = overall(st["lights"])
    return jsonable(st)


def offline_status(conn: sqlite3.Connection, cfg: Any, db_path: Path) -> dict[str, Any]:
    """What the database says when the daemon is not running (cameras from the last stats rows)."""
    from agent.api import queries

    cams = _offline_cameras(conn)
    sensors = queries.sensor_health(conn)
    ob = queries.outbox(conn, limit=0)
    st: dict[str, Any] = {
        "version": __version__,
        "running": False,
        "source": "database",
        "device": {"id": cfg.device.id, "site": cfg.device.site},
        "config_hash": cfg.config_hash(),
        "cameras": cams,
        "models": {},
        "model_errors": {},
        "database": {"path": str(db_path), "size_bytes": _db_size(db_path)},
        "sensors": sensors or None,
        "outbox": ob["stats"],
        "disk": disk(db_path),
        "clock": clock(None),
        "versions": versions(),
    }
    st["lights"] = _offline_lights(st, cfg)
    st["overall"] = "bad"
    return jsonable(st)


def _offline_cameras(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Each camera as its last stats row left it, "not running"."""
    from agent.api import queries

    cams = {}
    for name, s in queries.last_stats(conn).items():
        cams[name] = {
            "state": "not running",
            "fps": s["fps"],
            "latency_p50_ms": s["latency_p50_ms"],
            "latency_p95_ms": s["latency_p95_ms"],
            "model": s["model"],
            "accelerator": s["accelerator"],
            "last_stats_ts": s["ts_end"],
            "last_error": None,
        }
    return cams


def _db_size(db_path: Path) -> int | None:
    """The database's bytes with its -wal and -shm files (None when one cannot be read)."""
    try:
        return sum(
            os.stat(str(db_path) + sfx).st_size
            for sfx in ("", "-wal", "-shm")
            if os.path.exists(str(db_path) + sfx)
        )
    except OSError:
        return None


def _offline_lights(st: dict[str, Any], cfg: Any) -> dict[str, dict[str, str]]:
    """The status lights of a stopped agent: what the database allows, never green for live parts."""
    cams, sensors, ob_stats = st["cameras"], st["sensors"], st["outbox"]
    ls = lights(st, cfg)
    # never green from the database: its last stats window may be a partial one, and no camera runs now
    if cfg.cameras:
        ls["camera"] = _light("bad", "the agent is not running")
    elif cams:
        last = max(str(c.get("last_stats_ts") or "") for c in cams.values())
        ls["camera"] = _light("off", f"the agent is not running (last camera stats {last or 'unknown'})")
    ls["accelerator"] = _light("off", "the agent is not running")
    ls["broker"] = _light(
        "off",
        f"the agent is not running; outbox backlog {ob_stats['pending']}"
        if ob_stats
        else "the agent is not running",
    )
    if sensors:
        ls["sensors"] = _light("off", "the agent is not running (last health from the database)")
    return ls
