"""The core summary sections, read from the core tables: ``counts``, ``inference`` and ``health``.

Analytics (tracks, lines, zones) and sensors register their own sections in their own modules.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from agent import host as _health


def counts_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """Per camera: frames processed, and per label the detections (and distinct tracked objects once
    tracking fills ``detections.track_id``)."""
    cams: dict[str, dict[str, Any]] = {}
    for cam, frames in conn.execute(
        "SELECT camera, SUM(frames) FROM inference_stats WHERE ts_end >= ? AND ts_end < ? GROUP BY camera",
        (start, end),
    ):
        cams.setdefault(cam, {"frames": 0, "labels": {}})["frames"] = int(frames or 0)
    for cam, label, n, tracked, objects in conn.execute(
        "SELECT camera, label, COUNT(*), COUNT(track_id), COUNT(DISTINCT track_id) FROM detections"
        " WHERE ts >= ? AND ts < ? GROUP BY camera, label ORDER BY camera, label",
        (start, end),
    ):
        entry = cams.setdefault(cam, {"frames": 0, "labels": {}})
        entry["labels"][label] = {"detections": n, "objects": objects if tracked else None}
    return {"cameras": cams}


def _weighted_quantile(pairs: list[tuple[float, int]], q: float) -> float | None:
    pairs = sorted((v, w) for v, w in pairs if v is not None and w)
    total = sum(w for _, w in pairs)
    if not total:
        return None
    acc = 0
    for v, w in pairs:
        acc += w
        if acc >= q * total:
            return round(v, 2)
    return round(pairs[-1][0], 2)


def _seconds(a: str, b: str) -> float:
    f = "%Y-%m-%dT%H:%M:%S.%fZ"
    return max(0.0, (dt.datetime.strptime(b, f) - dt.datetime.strptime(a, f)).total_seconds())


def inference_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """Per camera: frames, fps, latency p50/p95 (frame-weighted over the stats rows of the window),
    model, active accelerator, dropped frames and dropped writes."""
    rows = conn.execute(
        "SELECT camera, ts_start, ts_end, model, accelerator, frames, latency_p50_ms, latency_p95_ms, detections,"
        " dropped_frames, dropped_writes FROM inference_stats WHERE ts_end >= ? AND ts_end < ? ORDER BY camera, ts_end",
        (start, end),
    ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    per: dict[str, list[tuple]] = {}
    for r in rows:
        per.setdefault(r[0], []).append(r)
    for cam, rs in per.items():
        frames = sum(r[5] for r in rs)
        secs = sum(_seconds(r[1], r[2]) for r in rs)
        out[cam] = {
            "frames": frames,
            "fps": round(frames / secs, 2) if secs > 0 else None,
            "latency_p50_ms": _weighted_quantile([(r[6], r[5]) for r in rs], 0.5),
            "latency_p95_ms": _weighted_quantile([(r[7], r[5]) for r in rs], 0.95),
            "model": rs[-1][3],
            "accelerator": rs[-1][4],
            "detections": sum(r[8] for r in rs),
            "dropped_frames": sum(r[9] for r in rs),
            "dropped_writes": sum(r[10] for r in rs),
        }
    return {"cameras": out}


def health_section(conn: sqlite3.Connection, start: str, end: str) -> dict[str, Any] | None:
    """The unit's health at the end of the window."""
    return _health.collect(conn)
