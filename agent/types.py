"""Plain data passed between the pipeline stages.

These are deliberately small, immutable-ish dataclasses with no behaviour, so any stage (and any
test) can build them without the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Frame:
    """One decoded camera frame.

    Attributes:
        camera: the camera's configured name.
        index: frame number within the source (0-based, as decoded; skipped frames still count).
        ts: wall-clock capture time, seconds since the Unix epoch (UTC).
        mono: ``time.monotonic()`` at capture, for rates and ages.
        image: BGR uint8 array, HxWx3 (OpenCV's layout).
        pos_s: position in the source in seconds for files (``None`` for live sources).
        epoch: increments each time the source is (re)opened; recurrent models reset their state
            when it changes.
        prepared: the image already fitted to the model's input by the camera's thread (see
            ``Engine.prepare``), or None; the inference stage uses it when it still matches.
    """

    camera: str
    index: int
    ts: float
    mono: float
    image: np.ndarray
    pos_s: float | None = None
    epoch: int = 0
    prepared: Any = None


@dataclass(slots=True)
class Detection:
    """One detected object, box in source-frame pixels ``(x1, y1, x2, y2)``."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "class_id": int(self.class_id),
            "score": round(float(self.score), 4),
            "box": [round(float(v), 1) for v in self.box],
        }


@dataclass(slots=True)
class Classification:
    """One class of a classifier's top-k."""

    label: str
    class_id: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "class_id": int(self.class_id), "score": round(float(self.score), 4)}


@dataclass(slots=True)
class Record:
    """One result of a kind the engine does not know (pose keypoints, a segmentation summary, ...).

    A family adapter makes these (``Adapter.records``); the results stage stores each as one row of
    the ``results`` table and the API serves them (``/api/results``), with no code of their own.

    Attributes:
        kind: what it is, for example ``"pose"``; a lowercase name (``[a-z][a-z0-9_-]*``).
        data: JSON-serialisable content; coordinates in source-frame pixels (``Transform.to_source``
            and ``Transform.points_to_source`` map the model's own). A numeric ``score`` in it is
            held to the camera's ``threshold`` as a detection's is: under it, not stored or shown
            (the adapter is given the lower threshold the tracker needs).
    """

    kind: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "data": self.data}


@dataclass(slots=True)
class InferenceResult:
    """What the inference stage produced for one frame."""

    frame: Frame
    model: str
    detections: list[Detection] = field(default_factory=list)
    classifications: list[Classification] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # results of other kinds (Record)
    latency_ms: float = 0.0  # invoke() only
    total_ms: float = 0.0  # preprocess + invoke + postprocess
    accelerator: str | None = None  # where this frame ran (it changes when an accelerator is lost)
