"""The API's routes (FastAPI). Read-only; every data route reads the live pipeline or the database.

Handlers that touch the database or encode images are plain ``def`` functions: Starlette runs them
in its thread pool, so the event loop (and the pipeline's threads) never wait on them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from agent import __version__
from agent.api import queries
from agent.api.incident_routes import add_incident_routes
from agent.api.queries import BINS, MAX_SPAN_S, NAME_PATTERN, SINCE_PATTERN, QueryError
from agent.api.status import jsonable, live_status
from agent.timefmt import iso_utc

PAGE = Path(__file__).with_name("page") / "index.html"
_NAME = NAME_PATTERN
_SINCE_DOC = (
    "How far back: a duration (90s, 30m, 6h, 2d, 1w; at most 400 days) or a time, 2026-11-23T17:00:00Z "
    "(no offset: UTC)."
)


class Problem(BaseModel):
    detail: str = Field(..., description="What went wrong and what to do.")


class Health(BaseModel):
    live: bool = Field(..., description="The agent's threads are alive (the API answers, the writer runs).")
    ready: bool = Field(..., description="At least one camera delivers frames (or none is configured).")
    checks: dict[str, Any]


class Detection(BaseModel):
    id: int
    ts: str = Field(..., description="UTC ISO-8601, milliseconds, 'Z'.")
    camera: str
    frame: int
    model: str
    label: str
    class_id: int
    score: float
    box: list[float] = Field(
        ..., description="x1, y1, x2, y2 in source-frame pixels.", min_length=4, max_length=4
    )
    track_id: int | None = None


class Detections(BaseModel):
    items: list[Detection]
    note: str | None = Field(None, description="Why the list is empty, where that is not for lack of data.")


class CountRow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    bin_start: str
    bin_minutes: float
    camera: str
    line: str
    direction: str
    class_: str = Field(..., alias="class")
    count: int


class BinTotal(BaseModel):
    bin_start: str
    count: int


class Counts(BaseModel):
    since: str
    bin_seconds: int
    items: list[CountRow]
    totals: list[BinTotal] = Field(
        ..., description="All lines, directions and classes summed per bin (for charts)."
    )
    note: str | None = None


class Reading(BaseModel):
    id: int
    ts: str
    sensor: str
    metric: str
    value: float
    unit: str
    quality: list[str] = Field(..., description="Quality flags (empty: good).")


class Readings(BaseModel):
    items: list[Reading]
    latest: dict[str, dict[str, Any]] = Field(
        ..., description="Newest value per sensor and metric (last 24 h)."
    )
    note: str | None = None
    aqi: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="US EPA AQI per PM sensor: table, current (NowCast) and daily (24-hour mean), each with basis, category and colour.",
    )


class Outbox(BaseModel):
    stats: dict[str, Any] | None = Field(
        ..., description="Backlog, last seq, session, delivered / rejected, gaps, pruning (null: no outbox)."
    )
    items: list[dict[str, Any]] = Field(
        ...,
        description="Rows in seq order: seq, kind, topic, priority, state, created, "
        "delivered, bytes (and payload with payload=true).",
    )
    note: str | None = None


_ERRS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Token missing or wrong (off loopback)."},
    429: {"model": Problem, "description": "Too many failed token checks: wait Retry-After."},
    422: {"model": Problem, "description": "A parameter cannot be understood."},
}


def _since(text: str | None, default: str | None) -> float | None:
    if text is None and default is None:
        return None
    try:
        return queries.parse_since(text, default or "1h")
    except QueryError as exc:
        raise HTTPException(422, str(exc)) from None


def build_app(server: Any) -> FastAPI:
    """The FastAPI application of an :class:`agent.api.server.ApiServer`."""
    pipe = server.pipeline
    app = FastAPI(
        title="edge-agent local API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        description="Read-only API of one roadside unit. Off loopback every route but `/` needs "
        "`Authorization: Bearer <token>` (`edge-agent token show`).",
    )

    def reader() -> sqlite3.Connection:
        from agent.store.db import connect

        path = pipe.database.path if pipe.database is not None else Path(pipe.cfg.storage.path)
        try:
            return connect(path, readonly=True)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"database not readable: {exc}") from None

    @app.exception_handler(sqlite3.OperationalError)
    async def _db_busy(_req: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"database busy or unreadable: {exc}; retry"},
            status_code=503,
            headers={"retry-after": "1"},
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        conf = {
            "refresh_s": server.cfg.api.page_refresh_s,
            "token_required": server.need_token,
            "device": pipe.cfg.device.id,
            "site": pipe.cfg.device.site,
        }
        html = server.page_html.replace("/*__CONFIG__*/{}", json.dumps(conf).replace("<", "\\u003c"))
        return HTMLResponse(html)

    @app.get(
        "/healthz",
        response_model=Health,
        responses={
            503: {"model": Health, "description": "Not live (or not ready when ?ready=true)."},
            **_ERRS,
        },
        summary="Liveness (and readiness with ready=true)",
    )
    def healthz(
        ready: bool = Query(False, description="Answer 503 unless the agent is also ready."),
    ) -> JSONResponse:
        w = pipe.writer
        writer_alive = bool(w is not None and w.stats().get("alive", True))
        res_age = time.monotonic() - pipe.results.last_progress if pipe.results is not None else None
        cams = {n: c.state for n, c in pipe.cameras.items()}
        is_ready = writer_alive and (not cams or any(s in ("up", "ended") for s in cams.values()))
        live = writer_alive and (res_age is None or res_age < 30)
        body = {
            "live": live,
            "ready": is_ready,
            "checks": {
                "writer_alive": writer_alive,
                "results_stage_age_s": None if res_age is None else round(res_age, 1),
                "cameras": cams,
            },
        }
        code = 200 if live and (is_ready or not ready) else 503
        return JSONResponse(body, status_code=code)

    @app.get(
        "/api/status",
        response_model=dict[str, Any],
        responses=_ERRS,
        summary="Everything a technician checks first",
    )
    def status() -> dict[str, Any]:
        st = live_status(pipe)
        st["api"] = {
            "bind": server.cfg.api.bind,
            "port": server.port,
            "token_required": server.need_token,
            "auth_failures": server.backoff.total_failures,
            "auth_refused": server.backoff.total_refused,
            "privacy": pipe.cfg.privacy.blur,
            "snapshots": pipe.cfg.privacy.snapshots,
        }
        return st

    @app.get(
        "/api/config",
        response_model=dict[str, Any],
        responses=_ERRS,
        summary="The running config (secrets masked)",
    )
    def config() -> dict[str, Any]:
        return jsonable(pipe.cfg.redacted())

    @app.get(
        "/api/detections",
        response_model=Detections,
        responses=_ERRS,
        summary="Stored detections, oldest first",
    )
    def detections(
        camera: str | None = Query(None, pattern=_NAME, description="Only this camera."),
        since: str | None = Query(None, pattern=SINCE_PATTERN, description=_SINCE_DOC),
        after_id: int | None = Query(
            None, ge=0, le=2**62, description="Only rows after this id (for tailing)."
        ),
        limit: int = Query(100, ge=1, le=5000),
    ) -> dict[str, Any]:
        t = _since(since, None)
        conn = reader()
        try:
            return queries.detections(conn, camera=camera, since=t, after_id=after_id, limit=limit)
        finally:
            conn.close()

    @app.get("/api/counts", response_model=Counts, responses=_ERRS, summary="Line crossings per bin")
    def counts(
        since: str = Query("6h", pattern=SINCE_PATTERN, description=_SINCE_DOC),
        bin: Literal[tuple(BINS)] = Query("15m", description="Bin length (UTC-aligned)."),  # type: ignore[valid-type]
        bin_seconds: int | None = Query(
            None,
            ge=1,
            le=int(MAX_SPAN_S),
            description="Any bin length in seconds (UTC-aligned); when given, replaces `bin`.",
        ),
        camera: str | None = Query(None, pattern=_NAME),
    ) -> dict[str, Any]:
        t = _since(since, "6h")
        conn = reader()
        try:
            return queries.counts_doc(conn, since=t, bin_s=bin_seconds or BINS[bin], camera=camera)
        finally:
            conn.close()

    @app.get(
        "/api/readings",
        response_model=Readings,
        responses=_ERRS,
        summary="Serial sensor readings, oldest first",
    )
    def readings(
        sensor: str | None = Query(None, pattern=_NAME),
        metric: str | None = Query(None, max_length=64),
        since: str | None = Query("1h", pattern=SINCE_PATTERN, description=_SINCE_DOC),
        after_id: int | None = Query(None, ge=0, le=2**62),
        limit: int = Query(500, ge=1, le=5000),
    ) -> dict[str, Any]:
        t = _since(since, "1h")
        conn = reader()
        try:
            out = queries.readings(
                conn, sensor=sensor, metric=metric, since=t, after_id=after_id, limit=limit
            )
            out["latest"] = queries.latest_readings(conn)
            out["aqi"] = queries.sensor_aqi(conn, out["latest"])
            return out
        finally:
            conn.close()

    @app.get("/api/outbox", response_model=Outbox, responses=_ERRS, summary="Messages waiting for the broker")
    def outbox(
        state: Literal["pending", "delivered", "rejected"] | None = Query(None),
        kind: Literal["summary", "health", "event"] | None = Query(
            None, description="Only this kind of message."
        ),
        from_seq: int | None = Query(
            None, ge=0, le=2**62, description="The first rows from this seq on (default: the newest)."
        ),
        limit: int = Query(50, ge=1, le=1000),
        payload: bool = Query(False, description="Include each row's `payload` (the JSON message)."),
    ) -> dict[str, Any]:
        conn = reader()
        try:
            return queries.outbox(
                conn, state=state, kind=kind, from_seq=from_seq, limit=limit, payload=payload
            )
        finally:
            conn.close()

    @app.get(
        "/api/snapshot/{camera}.jpg",
        response_class=Response,
        summary="Latest frame with boxes, lines and zones",
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "JPEG; X-Privacy says what was blurred."},
            403: {"model": Problem, "description": "Snapshots are off (privacy.snapshots = false)."},
            404: {"model": Problem, "description": "No such camera."},
            503: {"model": Problem, "description": "No frame inferred yet."},
            **_ERRS,
        },
    )
    def snapshot(
        camera: str = PathParam(..., pattern=_NAME),
        max_width: int | None = Query(None, ge=64, le=4096, description="Scale down to this width."),
    ) -> Response:
        priv = pipe.cfg.privacy
        if not priv.snapshots:
            raise HTTPException(403, "snapshots are disabled on this unit (privacy.snapshots = false)")
        if camera not in pipe.cameras:
            raise HTTPException(
                404, f"no camera named {camera!r}; cameras: {', '.join(sorted(pipe.cameras)) or 'none'}"
            )
        res = pipe.results.latest.get(camera) if pipe.results is not None else None
        if res is None or res.frame.image is None:
            cam = pipe.cameras[camera]
            raise HTTPException(
                503,
                f"camera {camera} has no inferred frame yet (state {cam.state}"
                + (f", last error: {cam.last_error}" if cam.last_error else "")
                + ")",
                headers={"retry-after": "2"},
            )
        r = server.snapshots.render(
            camera,
            res,
            pipe.cameras[camera].cfg,
            blur=priv.blur,
            blur_labels=priv.blur_labels,
            quality=server.cfg.api.snapshot_quality,
            max_width=max_width,
        )
        return Response(
            r.jpeg,
            media_type="image/jpeg",
            headers={
                "x-privacy": r.privacy,
                "x-frame-ts": iso_utc(r.frame_ts),
                "x-frame-index": str(r.frame_index),
            },
        )

    @app.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics",
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."},
            **_ERRS,
        },
    )
    def metrics() -> Response:
        from agent.api.metrics import CONTENT_TYPE

        return Response(server.metrics.render(), media_type=CONTENT_TYPE)

    from agent.privacy.api import add_routes as add_privacy_routes

    add_privacy_routes(app, server)
    add_incident_routes(app, reader, _ERRS)
    return app
