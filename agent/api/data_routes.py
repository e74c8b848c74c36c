"""The API's data queries: ``/api/detections``, ``/api/results``, ``/api/counts``, ``/api/readings``,
``/api/outbox``.

Each handler opens its own read-only connection (``reader``) and closes it before answering; they
are plain ``def`` functions, so Starlette runs them in its thread pool.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Literal, overload

from fastapi import FastAPI, HTTPException, Query

from agent.api import queries, vision_queries
from agent.api.queries import BINS, MAX_SPAN_S, NAME_PATTERN, SINCE_PATTERN, QueryError
from agent.api.schemas import ERRORS, Counts, Detections, Outbox, Readings, Results

Reader = Callable[[], sqlite3.Connection]

_NAME = NAME_PATTERN
_SINCE_DOC = (
    "How far back: a duration (90s, 30m, 6h, 2d, 1w; at most 400 days) or a time, 2026-11-23T17:00:00Z "
    "(no offset: UTC)."
)


@overload
def _since(text: str | None, default: str) -> float: ...
@overload
def _since(text: str | None, default: None) -> float | None: ...
def _since(text: str | None, default: str | None) -> float | None:
    if text is None and default is None:
        return None
    try:
        return queries.parse_since(text, default or "1h")
    except QueryError as exc:
        raise HTTPException(422, str(exc)) from None


def register_data_routes(app: FastAPI, reader: Reader) -> None:
    """Detections, results and counts (the cameras' side), then readings and the outbox."""
    register_detection_routes(app, reader)
    register_result_route(app, reader)
    register_reading_routes(app, reader)


def register_result_route(app: FastAPI, reader: Reader) -> None:
    """``/api/results``: the records of the result kinds a model family adds."""

    @app.get(
        "/api/results",
        response_model=Results,
        responses=ERRORS,
        summary="Stored records of other result kinds (pose, segmentation, ...), oldest first",
    )
    def results(
        kind: str | None = Query(None, pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="Only this kind."),
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
            return vision_queries.results(
                conn, kind=kind, camera=camera, since=t, after_id=after_id, limit=limit
            )
        finally:
            conn.close()


def register_detection_routes(app: FastAPI, reader: Reader) -> None:
    @app.get(
        "/api/detections",
        response_model=Detections,
        responses=ERRORS,
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
            return vision_queries.detections(conn, camera=camera, since=t, after_id=after_id, limit=limit)
        finally:
            conn.close()

    @app.get("/api/counts", response_model=Counts, responses=ERRORS, summary="Line crossings per bin")
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


def register_reading_routes(app: FastAPI, reader: Reader) -> None:
    @app.get(
        "/api/readings",
        response_model=Readings,
        responses=ERRORS,
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

    @app.get(
        "/api/outbox", response_model=Outbox, responses=ERRORS, summary="Messages waiting for the broker"
    )
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
