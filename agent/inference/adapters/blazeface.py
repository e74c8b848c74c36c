"""BlazeFace (MediaPipe face detection): SSD anchors, box decoding and weighted NMS, in numpy.

The model has no post-processing inside. Its two outputs are, for each of N anchors:

- ``regressors`` ``[1, N, 16]``: ``dx, dy, w, h`` of the box in input pixels, relative to the anchor
  centre, then 6 keypoints ``(x, y)`` (right eye, left eye, nose tip, mouth centre, right ear
  tragion, left ear tragion), also relative to the anchor centre;
- ``classificators`` ``[1, N, 1]``: one logit per anchor (score = sigmoid).

Anchors follow MediaPipe's ``SsdAnchorsCalculator`` with the options of its face detection graphs:
layers with strides ``(8, 16, 16, 16)`` on a 128×128 input; consecutive layers of the same stride
share one grid, each layer adding two anchors per cell (aspect ratio 1 and the interpolated scale),
so stride 8 gives 16×16 cells × 2 and stride 16 gives 8×8 cells × 6 = 896 anchors. Anchor centres
are at cell centres (``anchor_offset = 0.5``) and, with ``fixed_anchor_size``, every anchor has
unit width and height, so the decoded box is ``cx = a.cx + dx / in_w`` (normalized) and
``w = w_raw / in_w``. The full-range model (192×192, stride 4 grid) uses other options; they are
read from the tensors here (the anchor count tells which scheme applies).

Overlapping boxes are merged with *weighted* NMS (MediaPipe's ``WEIGHTED`` overlap type): take the
best remaining box, collect every remaining box overlapping it by more than ``iou_threshold``, and
replace the group by the score-weighted mean of their boxes (the best score is kept). This is
steadier than hard NMS on a face seen by many neighbouring anchors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.inference.adapters.base import Adapter, DetectionArrays

FACE_NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold in its face detection graphs

# (input size, strides, anchors per cell of each layer) of the published schemes
_SCHEMES = {
    896: (128, (8, 16, 16, 16)),  # face_detection_short_range (and the BlazeFace front model)
    2304: (192, (4,)),  # face_detection_full_range: one 48x48 grid, one anchor per cell
}


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int = 2) -> np.ndarray:
    """Anchor centres ``[N, 2]`` (normalized ``cx, cy``) of MediaPipe's SSD anchor scheme.

    Consecutive layers with the same stride are merged onto one grid; each layer contributes
    ``anchors_per_layer`` anchors per cell (one for ``strides == (4,)``, the full-range model).
    Order: grid by grid, row-major (y then x), the anchors of one cell together, as upstream.

    Args:
        input_size: the model's square input side in pixels.
        strides: the stride of each anchor layer.
        anchors_per_layer: anchors each layer adds per cell (2 with ``aspect_ratios = [1.0]`` and the
            interpolated scale).

    Returns:
        float32 ``[N, 2]`` anchor centres in [0, 1].
    """
    out: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = (j - i) * (anchors_per_layer if len(strides) > 1 else 1)
        cells = int(np.ceil(input_size / strides[i]))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        out.append(np.repeat(centres, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode regressors into boxes and keypoints.

    Args:
        raw: float ``[N, 4 + 2K]`` regressor rows.
        anchors: float ``[N, 2]`` anchor centres (normalized).
        input_size: the input side in pixels (the regressors' scale).

    Returns:
        ``(boxes, keypoints)``: ``[N, 4]`` normalized ``(x1, y1, x2, y2)`` and ``[N, K, 2]`` normalized
        points.
    """
    s = float(input_size)
    cx = raw[:, 0] / s + anchors[:, 0]
    cy = raw[:, 1] / s + anchors[:, 1]
    w = raw[:, 2] / s
    h = raw[:, 3] / s
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = raw[:, 4:].reshape(len(raw), -1, 2) / s + anchors[:, None, :]
    return boxes.astype(np.float32), kp.astype(np.float32)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3, max_out: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping boxes into their score-weighted mean (MediaPipe's WEIGHTED suppression).

    Args:
        boxes: float ``[N, 4]`` ``(x1, y1, x2, y2)`` (any units; may also carry extra columns, such
            as flattened keypoints, which are averaged the same way).
        scores: float ``[N]``.
        iou_threshold: boxes overlapping the group's best one by more than this join the group.
        max_out: most groups returned.

    Returns:
        ``(merged, merged_scores)``, best first; each score is the best score of its group.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    merged: list[np.ndarray] = []
    kept: list[float] = []
    remaining = np.arange(len(scores))
    while remaining.size and len(merged) < max_out:
        best = remaining[0]
        ious = _iou(boxes[best, :4], boxes[remaining, :4])
        group = remaining[ious > iou_threshold]
        if group.size == 0:  # a degenerate box overlaps nothing, not even itself
            group = remaining[:1]
        w = scores[group]
        merged.append((boxes[group] * w[:, None]).sum(axis=0) / w.sum())
        kept.append(float(scores[best]))
        remaining = np.setdiff1d(remaining, group, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    if not merged:
        return np.zeros((0, boxes.shape[1]), np.float32), np.zeros((0,), np.float32)
    return np.asarray(merged, np.float32), np.asarray(kept, np.float32)


def blazeface_outputs(interpreter: Any) -> tuple[int, int] | None:
    """Indices ``(regressors, classificators)`` in ``get_output_details()``, or ``None`` if not BlazeFace."""
    outs = interpreter.get_output_details()
    if len(outs) != 2:
        return None
    shapes = [tuple(int(x) for x in d["shape"]) for d in outs]
    reg = next((i for i, s in enumerate(shapes) if len(s) == 3 and s[2] >= 4 and (s[2] - 4) % 2 == 0), None)
    cls = next((i for i, s in enumerate(shapes) if len(s) == 3 and s[2] == 1), None)
    if reg is None or cls is None or reg == cls or shapes[reg][1] != shapes[cls][1]:
        return None
    if shapes[reg][1] not in _SCHEMES:
        return None
    return reg, cls


class BlazeFaceAdapter(Adapter):
    """MediaPipe BlazeFace face detectors (short range 128×128; full range 192×192).

    Input is RGB scaled to [-1, 1]. :meth:`objects` returns faces (class 0) after weighted NMS;
    ``last_keypoints`` holds the 6 keypoints (normalized input coordinates) of the last call's faces.

    Args:
        interpreter: an allocated interpreter.
        max_detections: most faces per call.
    """

    family = "blazeface"
    task = "detect"
    mean = 127.5
    std = 127.5

    def __init__(self, interpreter: Any, *, max_detections: int = 100, **kw: Any) -> None:
        super().__init__(interpreter)
        found = blazeface_outputs(interpreter)
        if found is None:
            shapes = ", ".join(str(list(d["shape"])) for d in interpreter.get_output_details())
            raise ModelError(
                f"not a BlazeFace model (outputs {shapes})",
                "BlazeFace has two outputs: regressors [1, N, 16] and classificators [1, N, 1]",
            )
        self.reg_index, self.cls_index = found
        outs = interpreter.get_output_details()
        self._reg = outs[self.reg_index]["index"]
        self._cls = outs[self.cls_index]["index"]
        n = int(outs[self.reg_index]["shape"][1])
        size, strides = _SCHEMES[n]
        in_shape = interpreter.get_input_details()[self.image_input]["shape"]
        if int(in_shape[1]) != size or int(in_shape[2]) != size:
            raise ModelError(
                f"BlazeFace with {n} anchors expects a {size}x{size} input, this one is "
                f"{int(in_shape[2])}x{int(in_shape[1])}",
                "use MediaPipe's face_detection_short_range.tflite (128x128) or full_range (192x192)",
            )
        self.input_size = size
        self.anchors = ssd_anchors(size, strides)
        # MediaPipe's face graphs merge at 0.3, whatever inference.iou_threshold says for other detectors
        self.iou_threshold = FACE_NMS_IOU
        self.max_detections = max_detections
        self.last_keypoints = np.zeros((0, 6, 2), np.float32)

    def raw_scores(self) -> np.ndarray:
        """Sigmoid score of every anchor ``[N]`` (after ``invoke``)."""
        logits = self.interpreter.get_tensor(self._cls)[0, :, 0].astype(np.float32)
        return (1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))).astype(np.float32)

    def objects(self, threshold: float) -> DetectionArrays:
        scores = self.raw_scores()
        keep = np.nonzero(scores >= threshold)[0]
        if keep.size == 0:
            self.last_keypoints = np.zeros((0, 6, 2), np.float32)
            return DetectionArrays(np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), scores[:0])
        raw = self.interpreter.get_tensor(self._reg)[0][keep].astype(np.float32)
        boxes, kps = decode_boxes(raw, self.anchors[keep], self.input_size)
        packed = np.concatenate([boxes, kps.reshape(len(keep), -1)], axis=1)
        merged, merged_scores = weighted_nms(packed, scores[keep], self.iou_threshold, self.max_detections)
        self.last_keypoints = merged[:, 4:].reshape(len(merged), -1, 2)
        return DetectionArrays(
            np.clip(merged[:, :4], 0.0, 1.0), np.zeros((len(merged),), np.int64), merged_scores
        )
