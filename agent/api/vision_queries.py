"""The API's queries of what the models produced: detections and the records of other result kinds
(``results``), each paged oldest first by time or by id."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.api.queries import missing_table
from agent.timefmt import iso_utc


def _page(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    *,
    filters: dict[str, str | None],
    since: float | None,
    after_id: int | None,
    limit: int,
) -> list[tuple[Any, ...]] | None:
    """A page of ``table``, oldest first: the newest ``limit`` since ``since``, or the first
    ``limit`` after ``after_id``; ``filters`` are column = value (``None``: any). ``None`` when the
    table does not exist (an older database)."""
    where: list[str] = []
    args: list[object] = []
    for col, value in filters.items():
        if value:
            where.append(f"{col} = ?")
            args.append(value)
    if since is not None:
        where.append("ts >= ?")
        args.append(iso_utc(max(since, 0)))
    if after_id is not None:
        where.append("id > ?")
        args.append(after_id)
    order = "ASC" if after_id is not None else "DESC"
    sql = (
        f"SELECT {columns} FROM {table}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id {order} LIMIT ?"
    )
    try:
        rows = conn.execute(sql, (*args, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if missing_table(exc):
            return None
        raise
    rows.sort(key=lambda r: r[0])
    return rows


def detections(
    conn: sqlite3.Connection,
    *,
    camera: str | None = None,
    since: float | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Detections, oldest first: the newest ``limit`` since ``since``, or the first ``limit`` after ``after_id``."""
    rows = _page(
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
    rows = _page(
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
