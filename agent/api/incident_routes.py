"""``/api/incidents``: recent road-safety incidents (docs/incidents.md) and their kept snapshots."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from agent.analytics.incidents import store


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    phase: str = Field(..., description="The incident's last phase: start, update or end.")
    kind: str
    rule: str
    camera: str
    zone: str
    track_id: int | None
    start: str
    end: str | None
    snapshot: bool = Field(..., description="A privacy-blurred JPEG is kept: GET /api/incidents/{id}.jpg.")


class Incidents(BaseModel):
    items: list[Incident]
    active: int = Field(..., description="Incidents in the list that have not ended.")


def add_incident_routes(
    app: FastAPI, reader: Callable[[], sqlite3.Connection], errors: dict[int | str, dict[str, Any]]
) -> None:
    @app.get(
        "/api/incidents", response_model=Incidents, responses=errors, summary="Recent incidents, newest first"
    )
    def incidents(
        limit: int = Query(50, ge=1, le=1000),
        since: str | None = Query(
            None,
            pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$",
            description="Only incidents that started at or after this UTC time.",
        ),
    ) -> dict[str, Any]:
        conn = reader()
        try:
            items = store.recent(conn, limit=limit, since=since)
        finally:
            conn.close()
        return {"items": items, "active": sum(1 for i in items if i["phase"] != "end")}

    @app.get(
        "/api/incidents/{incident_id}.jpg",
        response_class=Response,
        summary="The snapshot kept at the start of an incident",
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "JPEG, blurred as privacy.blur says."},
            404: {"description": "No such incident, or no snapshot kept for it."},
            **errors,
        },
    )
    def incident_snapshot(incident_id: str = PathParam(..., pattern=r"^[0-9a-f]{32}$")) -> Response:
        conn = reader()
        try:
            path = store.snapshot_path(conn, incident_id)
        finally:
            conn.close()
        if not path or not Path(path).is_file():
            raise HTTPException(404, f"no snapshot kept for incident {incident_id}")
        return Response(Path(path).read_bytes(), media_type="image/jpeg")
