"""YOLOv5 / YOLOv8 exports with raw outputs (no NMS inside the model).

Output layouts (one tensor):
- YOLOv8: ``[1, 4+C, N]`` (Ultralytics TFLite export) or ``[1, N, 4+C]``: ``cx, cy, w, h`` then C
  class scores.
- YOLOv5: ``[1, N, 5+C]``: ``cx, cy, w, h, objectness`` then C class scores (score = obj * cls).

Box coordinates are normalized (Ultralytics TFLite) or in input pixels (other exporters); which one is
read from the values. Decoding thresholds in the quantized domain first (the class maximum of an
int8 output is taken on the raw integers), so only candidates are dequantized; then class-aware NMS
with ``cv2.dnn.NMSBoxesBatched``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.inference.adapters.base import Adapter, DetectionArrays
from agent.inference.tensors import quant_params


@dataclass
class YoloLayout:
    """How to read a YOLO output tensor."""

    index: int
    attrs_first: bool  # [1, 4+C, N] (True) or [1, N, 4+C]
    num_attrs: int
    num_anchors: int
    version: int  # 5 (objectness) or 8


def yolo_layout(
    detail: dict, num_classes: int | None = None, version: int | None = None
) -> YoloLayout | None:
    """The YOLO layout of an output tensor, or ``None`` when it is not one.

    Args:
        detail: the output tensor's details.
        num_classes: classes of the label file, when known (tells v5 from v8).
        version: force 5 or 8.

    Returns:
        :class:`YoloLayout` or ``None``.
    """
    shape = [int(x) for x in detail["shape"]]
    if len(shape) != 3 or shape[0] != 1:
        return None
    a, b = shape[1], shape[2]
    attrs_first = a < b
    attrs, anchors = (a, b) if attrs_first else (b, a)
    if attrs < 5 or anchors < 100:
        return None
    if version is None:
        if num_classes is not None and attrs == 5 + num_classes:
            version = 5
        elif num_classes is not None and attrs == 4 + num_classes:
            version = 8
        else:
            version = 5 if attrs == 85 or not attrs_first and attrs % 5 == 0 and attrs != 84 else 8
    return YoloLayout(detail["index"], attrs_first, attrs, anchors, version)


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    score_threshold: float,
    max_det: int,
) -> np.ndarray:
    """Class-aware non-maximum suppression.

    Args:
        boxes_xyxy: ``[N, 4]`` float boxes.
        scores: ``[N]`` scores.
        class_ids: ``[N]`` class ids (boxes of different classes never suppress each other).
        iou_threshold: overlap above which the lower-scored box is dropped.
        score_threshold: minimum score.
        max_det: most boxes kept.

    Returns:
        Indices kept, best first.
    """
    import cv2

    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.empty_like(boxes_xyxy, dtype=np.float32)
    xywh[:, :2] = boxes_xyxy[:, :2]
    xywh[:, 2:] = boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]
    sc = scores.astype(np.float32)
    dnn: Any = cv2.dnn  # its stubs want sequences; it takes (and is fastest with) numpy arrays
    keep: Any
    if hasattr(dnn, "NMSBoxesBatched"):
        keep = dnn.NMSBoxesBatched(
            xywh, sc, class_ids.astype(np.int32), score_threshold, iou_threshold, top_k=max_det
        )
    else:  # older OpenCV: offset boxes per class so classes never overlap
        off = class_ids.astype(np.float32)[:, None] * (
            float(xywh[:, :2].max()) + float(xywh[:, 2:].max()) + 1.0
        )
        shifted = xywh.copy()
        shifted[:, :2] += off
        keep = dnn.NMSBoxes(shifted, sc, score_threshold, iou_threshold, top_k=max_det)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-sc[keep], kind="stable")][:max_det]


class YoloAdapter(Adapter):
    """YOLOv5/v8 raw output decode + NMS.

    Args:
        interpreter: an allocated interpreter.
        num_classes: classes in the label file (helps tell v5 from v8).
        iou_threshold: NMS overlap.
        max_detections: most boxes kept (before the engine's own limit).
        yolo_version: force 5 or 8.
    """

    family = "yolo"
    task = "detect"
    mean = 0.0
    std = 255.0

    def __init__(
        self,
        interpreter: Any,
        *,
        num_classes: int | None = None,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
        yolo_version: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(interpreter, **kw)
        outs = interpreter.get_output_details()
        lay = yolo_layout(outs[0], num_classes, yolo_version) if len(outs) == 1 else None
        if lay is None:
            shapes = ", ".join(str(list(d["shape"])) for d in outs)
            raise ModelError(
                f"a YOLO model has one [1, 4+C, N] or [1, N, 5+C] output, not {shapes}",
                "use family ssd or classifier",
            )
        self.layout = lay
        self.detail = outs[0]
        self.scale, self.zp = quant_params(self.detail)
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        w, h = interpreter.get_input_details()[self.image_input]["shape"][2:0:-1]
        self.in_w, self.in_h = int(w), int(h)
        self.normalized: bool | None = None

    def _q(self, real: float) -> float:
        """The raw (quantized) value of a real score threshold."""
        if self.detail["dtype"] == np.float32 or self.scale == 0:
            return real
        return math.ceil(real / self.scale + self.zp - 1e-6)

    def _deq(self, raw: np.ndarray) -> np.ndarray:
        if self.detail["dtype"] == np.float32 or self.scale == 0:
            return raw.astype(np.float32, copy=False)
        return (raw.astype(np.float32) - self.zp) * self.scale

    def objects(self, threshold: float) -> DetectionArrays:
        lay = self.layout
        raw = self.interpreter.get_tensor(lay.index)[0]
        if lay.attrs_first:
            raw = raw.T  # [N, attrs] view
        first_cls = 5 if lay.version == 5 else 4
        cls_raw = raw[:, first_cls:]
        best = cls_raw.argmax(axis=1)
        best_raw = cls_raw[np.arange(cls_raw.shape[0]), best]
        if lay.version == 8:
            cand = np.flatnonzero(best_raw >= self._q(threshold))
            scores = self._deq(best_raw[cand])
        else:
            obj = self._deq(raw[:, 4])
            scores_all = obj * self._deq(best_raw)
            cand = np.flatnonzero(scores_all >= threshold)
            scores = scores_all[cand]
        if cand.size == 0:
            return DetectionArrays(
                np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32)
            )
        xywh = self._deq(raw[cand, :4])
        if self.normalized is None:  # Ultralytics TFLite exports are normalized; others use pixels
            self.normalized = bool(np.abs(xywh).max() <= 2.0)
        if not self.normalized:
            xywh = xywh / np.array([self.in_w, self.in_h, self.in_w, self.in_h], np.float32)
        boxes = np.empty_like(xywh)
        boxes[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
        boxes[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
        ids = best[cand].astype(np.int64)
        keep = nms(boxes, scores, ids, self.iou_threshold, threshold, self.max_detections)
        return DetectionArrays(np.clip(boxes[keep], 0.0, 1.0), ids[keep], scores[keep].astype(np.float32))
