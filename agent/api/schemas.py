"""The local API's response models and the error responses every route documents (``ERRORS``).

They name the components of ``/openapi.json``; :mod:`agent.api.routes` and
:mod:`agent.api.data_routes` attach them to the routes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class ResultRecord(BaseModel):
    id: int
    ts: str = Field(..., description="UTC ISO-8601, milliseconds, 'Z'.")
    camera: str
    frame: int
    model: str
    kind: str = Field(..., description="The model family's name for it, e.g. 'pose'.")
    data: dict[str, Any] = Field(
        ..., description="The family's own content; coordinates in source-frame pixels."
    )


class Results(BaseModel):
    items: list[ResultRecord]
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


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Token missing or wrong (off loopback)."},
    429: {"model": Problem, "description": "Too many failed token checks: wait Retry-After."},
    422: {"model": Problem, "description": "A parameter cannot be understood."},
}
