"""What every model-family adapter provides to the engine.

An adapter wraps a plain, allocated interpreter. The engine writes the image (with the adapter's
normalization), calls :meth:`Adapter.before_invoke`, ``invoke()``, :meth:`Adapter.after_invoke`,
then reads :meth:`Adapter.objects` (``task = "detect"``) or :meth:`Adapter.scores`
(``task = "classify"``), and :meth:`Adapter.records` for every task.

The result type is open: a family whose output is neither boxes nor classes (pose keypoints, a
segmentation's areas per class) sets its own ``task`` name and returns :class:`~agent.types.Record`
objects from :meth:`Adapter.records`. The engine, the results stage, the store (``results`` table)
and the API (``/api/results``) carry them with no change; a pose detector can also return boxes from
:meth:`objects` (``task = "detect"``) and keypoints from :meth:`records`, so tracking and counting
still work on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.errors import ModelError
from agent.types import Record

if TYPE_CHECKING:
    from agent.inference.preprocess import Transform


@dataclass(slots=True)
class DetectionArrays:
    """Detections of one frame as arrays, boxes normalized ``(x1, y1, x2, y2)`` of the model input."""

    boxes: np.ndarray  # float32 [N, 4]
    class_ids: np.ndarray  # int64 [N]
    scores: np.ndarray  # float32 [N]


def image_input_index(interpreter: Any) -> int:
    """Position (in ``get_input_details()``) of the image input: the 4-D input with 3 channels."""
    details = interpreter.get_input_details()
    named = [i for i, d in enumerate(details) if len(d["shape"]) == 4 and d["shape"][-1] == 3]
    if not named:
        shapes = ", ".join(f"{d['name']} {list(d['shape'])}" for d in details)
        raise ModelError(
            f"the model has no image input (NHWC with 3 channels); inputs: {shapes}",
            "use an image model (detector or classifier)",
        )
    return named[0]


class Adapter:
    """Base of the family adapters.

    Args:
        interpreter: an allocated interpreter.
        mean, std: normalization the model expects, ``(pixel - mean) / std`` (subclasses set defaults).
    """

    family = "?"
    task = "detect"  # "classify", or a name of the family's own whose output is records() only
    mean = 127.5
    std = 127.5
    pad_value = 114

    def __init__(self, interpreter: Any, **kw: Any) -> None:
        self.interpreter = interpreter
        self.image_input = image_input_index(interpreter)

    def before_invoke(self, state_key: str) -> None:
        """Set any non-image inputs (recurrent state)."""

    def after_invoke(self, state_key: str) -> None:
        """Read back anything kept across frames (recurrent state)."""

    def reset_state(self, state_key: str | None = None) -> None:
        """Forget kept state (``None``: all keys)."""

    def objects(self, threshold: float) -> DetectionArrays:  # pragma: no cover - per family
        raise NotImplementedError

    def scores(self) -> np.ndarray:  # pragma: no cover - per family
        raise NotImplementedError

    def records(self, transform: Transform, threshold: float) -> list[Record]:
        """Results of other kinds for this frame (default: none).

        Args:
            transform: maps model-input coordinates to source pixels (``to_source`` for
                ``[N, 4]`` boxes, ``points_to_source`` for ``[N, 2]`` points).
            threshold: the least score asked for (the camera's, or the tracker's low threshold).

        Returns:
            JSON-serialisable records, coordinates in source pixels; stored and served as they are.
        """
        return []
