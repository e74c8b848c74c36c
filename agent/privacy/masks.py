"""Static privacy masks: polygons of a camera's frame blacked out or blurred before anything sees them.

The pipeline applies a camera's masks at one spot, as the inference stage takes the frame from the
camera's slot (:meth:`MaskSet.apply`), in place, so inference, tracking, snapshots, stored images
and the status page all see the masked frame; the unmasked pixels exist only between the decoder
and that call. Detections whose box lies mostly inside a mask (more than the mask's
``drop_overlap`` of the box's area) are dropped there too, and counted (:meth:`MaskSet.filter`).

``black`` fills the polygon with 0. ``blur`` replaces it by block means (blocks of 1/8 of the
polygon's smaller side, at least 16 px) interpolated smoothly back: its shape and average colours
remain, no detail does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def polygon_pixels(points: Sequence[Sequence[float]], units: str, size: tuple[int, int]) -> np.ndarray:
    """A mask's corners in frame pixels (``size`` is (width, height)); ``auto``: 0..1 means normalized."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    norm = units == "norm" or (units == "auto" and bool(np.all((arr >= 0) & (arr <= 1))))
    if norm:
        arr = arr * np.array(size, dtype=np.float64)
    return arr


class _Compiled:
    """The masks rasterised for one frame size."""

    def __init__(self, masks: Sequence[Any], size: tuple[int, int]) -> None:
        w, h = size
        self.size = size
        self.black: list[np.ndarray] = []
        self.blur: list[tuple[np.ndarray, tuple[int, int, int, int], np.ndarray]] = []  # pts, bbox, 0/1 mask
        self.union = np.zeros((h, w), np.uint8)  # 1 inside any mask
        self.per_mask: list[tuple[Any, np.ndarray]] = []
        for m in masks:
            pts = np.round(polygon_pixels(m.points, m.units, size)).astype(np.int32)
            one = np.zeros((h, w), np.uint8)
            cv2.fillPoly(one, [pts], 1)
            self.union |= one
            self.per_mask.append((m, one))
            if m.mode == "black":
                self.black.append(pts)
            else:
                x, y, bw, bh = cv2.boundingRect(pts)
                x2, y2 = min(w, x + bw), min(h, y + bh)
                x, y = max(0, x), max(0, y)
                if x2 > x and y2 > y:
                    self.blur.append((pts, (x, y, x2, y2), one[y:y2, x:x2].copy()))
        # summed-area table of each mask, for "how much of this box is masked" in O(1)
        self.integrals = [(m, cv2.integral(one)) for m, one in self.per_mask]


def _pixelate(roi: np.ndarray) -> np.ndarray:
    """Block means (blocks of 1/8 of the smaller side, at least 16 px), smoothly interpolated back:
    no detail finer than a block survives, and it costs two resizes (no large Gaussian kernel)."""
    h, w = roi.shape[:2]
    block = max(16, min(w, h) // 8)
    small = cv2.resize(roi, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class MaskSet:
    """The static masks of one camera.

    Args:
        camera: camera name.
        masks: its :class:`~agent.privacy.config.PrivacyMask` list.
    """

    def __init__(self, camera: str, masks: Sequence[Any]) -> None:
        self.camera = camera
        self.masks = list(masks)
        self._compiled: _Compiled | None = None
        self._lock = threading.Lock()
        self.frames = 0  # frames masked
        self.dropped = 0  # detections dropped as inside a mask
        self.dropped_by_mask: dict[str, int] = {m.name: 0 for m in self.masks}

    def __bool__(self) -> bool:
        return bool(self.masks)

    def _for(self, w: int, h: int) -> _Compiled:
        c = self._compiled
        if c is None or c.size != (w, h):
            with self._lock:
                c = self._compiled
                if c is None or c.size != (w, h):
                    c = self._compiled = _Compiled(self.masks, (w, h))
        return c

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Mask ``image`` (BGR, HxWx3) in place and return it."""
        if not self.masks:
            return image
        h, w = image.shape[:2]
        c = self._for(w, h)
        if c.black:
            cv2.fillPoly(image, c.black, (0, 0, 0))
        for _, (x1, y1, x2, y2), inside in c.blur:
            roi = image[y1:y2, x1:x2]
            cv2.copyTo(_pixelate(roi), inside, roi)
        self.frames += 1
        return image

    def masked_fraction(self, box: Sequence[float], size: tuple[int, int]) -> dict[str, float]:
        """Fraction of ``box`` (x1, y1, x2, y2 pixels) inside each mask, by mask name."""
        w, h = size
        c = self._for(w, h)
        x1, y1 = int(np.clip(np.floor(box[0]), 0, w)), int(np.clip(np.floor(box[1]), 0, h))
        x2, y2 = int(np.clip(np.ceil(box[2]), 0, w)), int(np.clip(np.ceil(box[3]), 0, h))
        area = max(1, (x2 - x1) * (y2 - y1))
        out = {}
        for m, ii in c.integrals:
            inside = int(ii[y2, x2]) - int(ii[y1, x2]) - int(ii[y2, x1]) + int(ii[y1, x1])
            out[m.name] = inside / area
        return out

    def filter(self, detections: list[Any], size: tuple[int, int]) -> list[Any]:
        """Detections not mostly inside a mask (the others are dropped and counted)."""
        if not self.masks or not detections:
            return detections
        keep = []
        for d in detections:
            frac = self.masked_fraction(d.box, size)
            hit = next(
                (m.name for m in self.masks if m.drop_overlap < 1 and frac[m.name] > m.drop_overlap), None
            )
            if hit is None:
                keep.append(d)
            else:
                self.dropped += 1
                self.dropped_by_mask[hit] = self.dropped_by_mask.get(hit, 0) + 1
        return keep

    def status(self) -> dict[str, Any]:
        return {
            "masks": [{"name": m.name, "mode": m.mode, "points": len(m.points)} for m in self.masks],
            "frames_masked": self.frames,
            "detections_dropped": self.dropped,
            "dropped_by_mask": dict(self.dropped_by_mask),
        }


def current(existing: MaskSet | None, camera: str, masks: Sequence[Any]) -> MaskSet:
    """``existing`` while the camera's mask list is unchanged (its counters carry on), else a new set."""
    if existing is not None and existing.masks == list(masks):
        return existing
    return MaskSet(camera, masks)


def pipeline_masks(pipe: Any) -> dict[str, MaskSet]:
    """Every camera's :class:`MaskSet` in a running pipeline (held by its inference workers)."""
    out: dict[str, MaskSet] = {}
    for w in getattr(pipe, "workers", []) or []:
        out.update({k: v for k, v in getattr(w, "masks", {}).items() if v})
    return dict(sorted(out.items()))
