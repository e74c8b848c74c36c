"""Snapshot JPEGs: the latest inferred frame with boxes, counting lines and zones, people blurred.

Everything happens in the request (never in the pipeline): the frame is copied, blurred according
to ``privacy.blur``, scaled, drawn on and encoded. A small per-camera cache answers several viewers
of the same frame with one encode; a semaphore caps concurrent encodes (``api.snapshot_workers``).

Privacy: the frame already carries the camera's static masks (applied in the pipeline before
inference); blurring (:func:`agent.privacy.blur.apply_privacy`: people, or faces found by the
on-device face detector with the head region where none is found) comes first, on the
full-resolution copy, so no drawing reveals what is under it.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from agent.privacy.blur import apply_privacy, blur_region  # noqa: F401  (blur_region: re-export)

log = logging.getLogger(__name__)

_COLORS = {
    "person": (60, 60, 230),
    "car": (230, 160, 40),
    "truck": (40, 200, 230),
    "bus": (40, 230, 120),
    "motorcycle": (200, 60, 200),
    "bicycle": (200, 200, 60),
}


@dataclass
class Rendered:
    jpeg: bytes
    frame_ts: float
    frame_index: int
    privacy: str  # what was blurred, for the X-Privacy header


def _color(label: str) -> tuple[int, int, int]:
    if label in _COLORS:
        return _COLORS[label]
    h = sum(label.encode()) * 47 % 180
    hsv = np.array([[[h, 200, 230]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _geometry(
    cam_cfg: Any, size: tuple[int, int]
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """Counting lines and zones of a camera in source-frame pixels (empty where analytics is absent)."""
    an = getattr(cam_cfg, "analytics", None)
    if an is None:
        return [], []
    try:
        from agent.analytics.geometry import to_pixels
    except ImportError:
        return [], []
    lines, zones = [], []
    for ln in getattr(an, "lines", []):
        try:
            lines.append((ln.name, to_pixels(ln.points, ln.units, size, ln.name)))
        except ValueError:
            continue
    for z in getattr(an, "zones", []):
        try:
            zones.append((z.name, to_pixels(z.points, z.units, size, z.name)))
        except ValueError:
            continue
    return lines, zones


def draw(
    img: np.ndarray,
    detections: list[Any],
    cam_cfg: Any,
    scale: float,
    caption: str,
    records: list[Any] | None = None,
) -> None:
    """Zones, boxes, a model family's keypoints (``records``), lines and a caption onto ``img``
    (already scaled by ``scale``)."""
    h, w = img.shape[:2]
    src_size = (round(w / scale), round(h / scale))
    lines, zones = _geometry(cam_cfg, src_size)
    th = max(1, round(2 * max(w, h) / 1280))
    fs = max(0.4, 0.55 * max(w, h) / 1280)
    if zones:
        overlay = img.copy()
        for _, pts in zones:
            cv2.fillPoly(overlay, [np.round(pts * scale).astype(np.int32)], (0, 200, 255))
        cv2.addWeighted(overlay, 0.18, img, 0.82, 0, dst=img)
        for name, pts in zones:
            p = np.round(pts * scale).astype(np.int32)
            cv2.polylines(img, [p], True, (0, 200, 255), th)
            _text(img, f"zone {name}", tuple(p[0]), fs, (0, 200, 255))
    for d in detections:
        x1, y1, x2, y2 = (round(v * scale) for v in d.box)
        c = _color(d.label)
        cv2.rectangle(img, (x1, y1), (x2, y2), c, th)
        _text(img, f"{d.label} {d.score:.2f}", (x1, max(12, y1 - 4)), fs, c)
    _points(img, records or [], scale, th)
    # counting lines last: a busy frame's boxes and their labels never hide them
    for name, pts in lines:
        p = np.round(pts * scale).astype(np.int32)
        cv2.line(img, tuple(p[0]), tuple(p[1]), (0, 255, 255), th + 1)
        _text(img, f"line {name}", (int(p[0][0]) + 4, int(p[0][1]) - 6), fs, (0, 255, 255))
    _text(img, caption, (6, h - 8), fs, (255, 255, 255))


def _points(img: np.ndarray, records: list[Any], scale: float, th: int) -> None:
    """The ``keypoints`` of each record (``[[x, y], ...]`` in source pixels, as a pose family gives
    them) as dots in the kind's colour; anything else in a record is not drawn."""
    for r in records:
        pts = r.data.get("keypoints") if isinstance(r.data, dict) else None
        if not isinstance(pts, list):
            continue
        c = _color(str(r.kind))
        for p in pts:
            if (
                isinstance(p, (list, tuple))
                and len(p) >= 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in p[:2])
            ):
                cv2.circle(img, (round(p[0] * scale), round(p[1] * scale)), th + 2, c, -1, cv2.LINE_AA)


def _text(img: np.ndarray, text: str, org: tuple[int, int], fs: float, color: tuple[int, int, int]) -> None:
    """Text on a dark plate (readable on any background)."""
    x, y = int(org[0]), int(org[1])
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
    cv2.rectangle(img, (x - 2, y - th - 3), (x + tw + 2, y + base), (20, 20, 20), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, fs, color, 1, cv2.LINE_AA)


class SnapshotRenderer:
    """Renders and caches the latest snapshot of each camera."""

    def __init__(self, workers: int = 2, faces: Any = None) -> None:
        self.faces = faces  # a FaceFinder for privacy.blur = "faces"
        self._sem = threading.BoundedSemaphore(workers)
        self._cache: dict[str, tuple[tuple, Rendered]] = {}
        self._lock = threading.Lock()
        self.encoded = 0

    def render(
        self,
        camera: str,
        result: Any,
        cam_cfg: Any,
        *,
        blur: str,
        blur_labels: list[str],
        quality: int,
        max_width: int | None = None,
    ) -> Rendered:
        f = result.frame
        key = (f.index, f.ts, f.epoch, blur, tuple(blur_labels), quality, max_width)
        with self._lock:
            hit = self._cache.get(camera)
        if hit is not None and hit[0] == key:
            return hit[1]
        with self._sem:
            img = np.array(f.image, copy=True)  # the pipeline's frame is never touched
            dets = list(result.detections or [])
            privacy = apply_privacy(img, dets, blur, blur_labels, self.faces)
            scale = 1.0
            if max_width and img.shape[1] > max_width:
                scale = max_width / img.shape[1]
                img = cv2.resize(
                    img, (max_width, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA
                )
            from agent.timefmt import iso_utc

            caption = f"{camera}  {iso_utc(f.ts)}  frame {f.index}  {len(dets)} detection(s)"
            draw(img, dets, cam_cfg, scale, caption, list(getattr(result, "records", None) or []))
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            self.encoded += 1
        out = Rendered(buf.tobytes(), f.ts, f.index, privacy)
        with self._lock:
            self._cache[camera] = (key, out)
        return out
