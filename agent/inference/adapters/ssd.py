"""SSD detectors with ``TFLite_Detection_PostProcess`` (boxes, classes, scores, count).

Two layouts exist: TF1 exports name the outputs ``TFLite_Detection_PostProcess`` (boxes),
``:1`` (classes), ``:2`` (scores), ``:3`` (count); TF2 exports name them
``StatefulPartitionedCall:0`` (count), ``:1`` (scores), ``:2`` (classes), ``:3`` (boxes), and the
order of the output list differs between converters. So tensors are identified by shape (boxes are
``[1, N, 4]``, count is ``[1]``), then classes vs scores by name, and confirmed from the values
(class ids are whole numbers, scores are not) on the first frame that tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.inference.adapters.base import Adapter, DetectionArrays


@dataclass
class SsdOutputs:
    """Output tensor indices of an SSD postprocess (interpreter tensor indices)."""

    boxes: int
    classes: int
    scores: int
    count: int
    layout: str  # "tf1", "tf2" or "shapes"
    confirmed: bool = False


def _suffix(name: str) -> int | None:
    m = re.search(r":(\d+)$", name)
    return int(m.group(1)) if m else 0 if "PostProcess" in name else None


def is_ssd(interpreter: Any) -> bool:
    """True when the outputs look like a detection postprocess (boxes, classes, scores, count)."""
    try:
        find_ssd_outputs(interpreter)
        return True
    except ModelError:
        return False


def find_ssd_outputs(interpreter: Any) -> SsdOutputs:
    """Identify the four postprocess outputs of an SSD model.

    Args:
        interpreter: an allocated interpreter.

    Returns:
        :class:`SsdOutputs` with the tensor index of each output.

    Raises:
        ModelError: the model has no boxes/classes/scores/count outputs.
    """
    outs = [d for d in interpreter.get_output_details() if len(d["shape"]) <= 3]
    boxes = [d for d in outs if len(d["shape"]) == 3 and d["shape"][-1] == 4]
    counts = [d for d in outs if int(np.prod(d["shape"])) == 1]
    if len(boxes) != 1 or len(counts) != 1:
        raise ModelError("not an SSD postprocess layout", "set inference.family")
    n = int(boxes[0]["shape"][1])
    pair = [d for d in outs if len(d["shape"]) == 2 and int(d["shape"][1]) == n]
    if len(pair) != 2:
        raise ModelError("not an SSD postprocess layout", "set inference.family")
    names = {d["name"] for d in outs}
    a, b = sorted(pair, key=lambda d: _suffix(d["name"]) or 0)
    if any(nm.startswith("StatefulPartitionedCall") for nm in names):
        # TF2: :1 scores, :2 classes
        scores, classes, layout = a, b, "tf2"
    elif any("TFLite_Detection_PostProcess" in nm for nm in names):
        # TF1: :1 classes, :2 scores
        classes, scores, layout = a, b, "tf1"
    else:
        classes, scores, layout = pair[0], pair[1], "shapes"
    return SsdOutputs(boxes[0]["index"], classes["index"], scores["index"], counts[0]["index"], layout)


def _integral(x: np.ndarray) -> bool:
    return bool(np.all(np.abs(x - np.round(x)) < 1e-6))


def get_objects(interpreter: Any, outputs: SsdOutputs, threshold: float) -> DetectionArrays:
    """Read the detections above ``threshold`` after ``invoke()``.

    Args:
        interpreter: the interpreter, after ``invoke()``.
        outputs: from :func:`find_ssd_outputs` (its ``confirmed`` flag is updated).
        threshold: minimum score.

    Returns:
        :class:`DetectionArrays`: boxes ``[N, 4]`` as normalized ``(x1, y1, x2, y2)`` of the model
        input, class ids and scores, best first.
    """
    classes = interpreter.get_tensor(outputs.classes)[0]
    scores = interpreter.get_tensor(outputs.scores)[0]
    if not outputs.confirmed:
        ci, si = _integral(classes), _integral(scores)
        if ci != si:
            if si and not ci:  # the names lied: swap
                outputs.classes, outputs.scores = outputs.scores, outputs.classes
                classes, scores = scores, classes
            outputs.confirmed = True
    count = int(interpreter.get_tensor(outputs.count).reshape(-1)[0])
    count = max(0, min(count, len(scores)))
    sc = scores[:count]
    keep = np.flatnonzero(sc >= threshold)
    if keep.size and np.any(np.diff(sc[keep]) > 0):
        keep = keep[np.argsort(-sc[keep], kind="stable")]
    b = interpreter.get_tensor(outputs.boxes)[0][keep]  # ymin, xmin, ymax, xmax
    boxes = np.empty((len(keep), 4), np.float32)
    boxes[:, 0] = b[:, 1]
    boxes[:, 1] = b[:, 0]
    boxes[:, 2] = b[:, 3]
    boxes[:, 3] = b[:, 2]
    return DetectionArrays(
        np.clip(boxes, 0.0, 1.0), classes[keep].astype(np.int64), sc[keep].astype(np.float32)
    )


class SsdAdapter(Adapter):
    """SSD with TFLite_Detection_PostProcess (TF1 or TF2 layout)."""

    family = "ssd"
    task = "detect"

    def __init__(self, interpreter: Any, **kw: Any) -> None:
        super().__init__(interpreter, **kw)
        self.outputs = find_ssd_outputs(interpreter)

    def objects(self, threshold: float) -> DetectionArrays:
        return get_objects(self.interpreter, self.outputs, threshold)
