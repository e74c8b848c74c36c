"""The API's queries of what the models produced: detections and the records of other result kinds
(``results``), each paged oldest first by time or by id."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.api.queries import page


def detections(
    conn: sqlite3.Connection,
    *,
    camera: str | None = None,
    since: float | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Detections, oldest first: the newest ``limit`` since ``since``, or the first ``limit`` after ``after_id``."""
    rows = page(
        conn,
        "detections",
        "id, ts, camera, frame, model, label, class_id, score, x1, y1, x2, y2, track_id",
        filters={"camera": camera},
        since=since,
        after_id=after_id,
        limit=limit,
    )
    if rows is None:
        return {"items": [], "note": "no detections table in this database"}
    items = [
        {
            "id": r[0],
            "ts": r[1],
            "camera": r[2],
            "frame": r[3],
            "model": r[4],
            "label": r[5],
            "class_id": r[6],
            "score": round(r[7], 4),
            "box": [r[8], r[9], r[10], r[11]],
            "track_id": r[12],
        }
        for r in rows
    ]
    return {"items": items, "note": None}


def results(
    conn: sqlite3.Connection,
    *,
    kind: str | None = None,
    camera: str | None = None,
    since: float | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Records of the kinds family adapters add (``results`` table), paged as :func:`detections`."""
    rows = page(
        conn,
        "results",
        "id, ts, camera, frame, model, kind, data",
        filters={"camera": camera, "kind": kind},
        since=since,
        after_id=after_id,
        limit=limit,
    )
    if rows is None:
        return {"items": [], "note": "no results table in this database (an agent before schema core v2)"}
    items = [
        {
            "id": r[0],
            "ts": r[1],
            "camera": r[2],
            "frame": r[3],
            "model": r[4],
            "kind": r[5],
            "data": json.loads(r[6]),
        }
        for r in rows
    ]
    return {"items": items, "note": None}
