"""Rows of one inferred frame for the writer: detections (with their tracks), classifications, and
the records of the kinds a model family adds (``results``)."""

from __future__ import annotations

import json
import re
from typing import Any

from agent.timefmt import iso_utc
from agent.types import Classification, Detection, InferenceResult, Record

#: what a record's kind may be (``Record.kind``): it is a column value, an API filter and a metric label
RECORD_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def frame_keys(res: InferenceResult) -> dict[str, Any]:
    """The columns every row of this frame shares."""
    f = res.frame
    return {"ts": iso_utc(f.ts), "camera": f.camera, "frame": f.index, "model": res.model}


def detection_rows(
    keys: dict[str, Any], detections: list[Detection], track_ids: list[int | None]
) -> list[dict[str, Any]]:
    return [
        {
            **keys,
            "label": d.label,
            "class_id": int(d.class_id),
            "score": float(d.score),
            "x1": float(d.box[0]),
            "y1": float(d.box[1]),
            "x2": float(d.box[2]),
            "y2": float(d.box[3]),
            "track_id": tid,
        }
        for d, tid in zip(detections, track_ids)
    ]


def classification_rows(keys: dict[str, Any], classes: list[Classification]) -> list[dict[str, Any]]:
    return [
        {**keys, "label": c.label, "class_id": int(c.class_id), "score": float(c.score), "rank": i}
        for i, c in enumerate(classes)
    ]


def record_row(keys: dict[str, Any], record: Record) -> dict[str, Any]:
    """One ``results`` row; ``ValueError`` when the kind is not a name or the data is not JSON (NaN
    included): the adapter's bug, which the caller counts without losing the frame's other rows."""
    if not isinstance(record.kind, str) or not RECORD_KIND.fullmatch(record.kind):
        raise ValueError(f"its kind is not a name matching {RECORD_KIND.pattern}")
    if not isinstance(record.data, dict):
        raise ValueError(f"its data is a {type(record.data).__name__}, not a JSON object")
    try:
        data = json.dumps(record.data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its data is not JSON: {exc}") from None
    return {**keys, "kind": record.kind, "data": data}


def below(record: Record, shown: float) -> bool:
    """A record whose ``data["score"]`` is a number under the camera's threshold (not stored)."""
    score = record.data.get("score") if isinstance(record.data, dict) else None
    return isinstance(score, (int, float)) and not isinstance(score, bool) and score < shown
