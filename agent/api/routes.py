"""The API's routes (FastAPI). Read-only; every data route reads the live pipeline or the database.

Handlers that touch the database or encode images are plain ``def`` functions: Starlette runs them
in its thread pool, so the event loop (and the pipeline's threads) never wait on them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agent import __version__
from agent.api.data_routes import Reader, register_data_routes
from agent.api.incident_routes import add_incident_routes
from agent.api.queries import NAME_PATTERN
from agent.api.schemas import ERRORS, Health, Problem
from agent.api.status import jsonable, live_status
from agent.timefmt import iso_utc

if TYPE_CHECKING:
    from agent.api.host import ApiHost
    from agent.api.server import ApiServer
    from agent.types import InferenceResult

PAGE = Path(__file__).with_name("page") / "index.html"
_NAME = NAME_PATTERN


def build_app(server: ApiServer) -> FastAPI:
    """The FastAPI application of an :class:`agent.api.server.ApiServer`.

    The routes are registered in the order ``/openapi.json`` lists them: the page, health, status
    and config, the data queries, snapshots, metrics, then the privacy report and incidents.
    """
    app = FastAPI(
        title="edge-agent local API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        description="Read-only API of one roadside unit. Off loopback every route but `/` needs "
        "`Authorization: Bearer <token>` (`edge-agent token show`).",
    )
    reader = make_reader(server.pipeline)
    add_db_busy_handler(app)
    register_page(app, server)
    register_health(app, server.pipeline)
    register_status_routes(app, server)
    register_data_routes(app, reader)
    register_snapshot_route(app, server)
    register_metrics_route(app, server)

    from agent.privacy.api import add_routes as add_privacy_routes

    add_privacy_routes(app, server)
    add_incident_routes(app, reader, ERRORS)
    return app


def make_reader(pipe: ApiHost) -> Reader:
    """A function that opens the agent's database read-only (503 when it cannot)."""

    def reader() -> sqlite3.Connection:
        from agent.store.db import connect

        path = pipe.database.path if pipe.database is not None else Path(pipe.cfg.storage.path)
        try:
            return connect(path, readonly=True)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"database not readable: {exc}") from None

    return reader


def add_db_busy_handler(app: FastAPI) -> None:
    """A locked or unreadable database answers 503 with Retry-After, not 500."""

    @app.exception_handler(sqlite3.OperationalError)
    async def _db_busy(_req: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"database busy or unreadable: {exc}; retry"},
            status_code=503,
            headers={"retry-after": "1"},
        )


def register_page(app: FastAPI, server: ApiServer) -> None:
    """``/``: the technicians' page, with its settings filled in."""
    pipe = server.pipeline

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


def register_health(app: FastAPI, pipe: ApiHost) -> None:
    """``/healthz``: liveness, and readiness with ``?ready=true``."""

    @app.get(
        "/healthz",
        response_model=Health,
        responses={
            503: {"model": Health, "description": "Not live (or not ready when ?ready=true)."},
            **ERRORS,
        },
        summary="Liveness (and readiness with ready=true)",
    )
    def healthz(
        ready: bool = Query(False, description="Answer 503 unless the agent is also ready."),
    ) -> JSONResponse:
        h = pipe.health()
        writer_alive, res_age, cams = h["writer_alive"], h["results_age_s"], h["cameras"]
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


def register_status_routes(app: FastAPI, server: ApiServer) -> None:
    """``/api/status`` (with the API's own state) and ``/api/config``."""
    pipe = server.pipeline

    @app.get(
        "/api/status",
        response_model=dict[str, Any],
        responses=ERRORS,
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
        responses=ERRORS,
        summary="The running config (secrets masked)",
    )
    def config() -> dict[str, Any]:
        return jsonable(pipe.cfg.redacted())


def register_snapshot_route(app: FastAPI, server: ApiServer) -> None:
    """``/api/snapshot/{camera}.jpg``: the latest inferred frame, drawn and blurred."""
    pipe = server.pipeline

    @app.get(
        "/api/snapshot/{camera}.jpg",
        response_class=Response,
        summary="Latest frame with boxes, lines and zones",
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "JPEG; X-Privacy says what was blurred."},
            403: {"model": Problem, "description": "Snapshots are off (privacy.snapshots = false)."},
            404: {"model": Problem, "description": "No such camera."},
            503: {"model": Problem, "description": "No frame inferred yet."},
            **ERRORS,
        },
    )
    def snapshot(
        camera: str = PathParam(..., pattern=_NAME),
        max_width: int | None = Query(None, ge=64, le=4096, description="Scale down to this width."),
    ) -> Response:
        priv = pipe.cfg.privacy
        res = _latest_result(pipe, camera)
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


def _latest_result(pipe: ApiHost, camera: str) -> InferenceResult:
    """The camera's latest inferred frame: 403 when snapshots are off, 404 for no such camera, 503
    (with Retry-After) before its first inferred frame."""
    if not pipe.cfg.privacy.snapshots:
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
    return res


def register_metrics_route(app: FastAPI, server: ApiServer) -> None:
    """``/metrics``: Prometheus text."""

    @app.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics",
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."},
            **ERRORS,
        },
    )
    def metrics() -> Response:
        from agent.api.metrics import CONTENT_TYPE

        return Response(server.metrics.render(), media_type=CONTENT_TYPE)
