"""Snapshot JPEGs: the latest inferred frame with boxes, counting lines and zones, people blurred.

Everything happens in the request (never in the pipeline): the frame is copied, blurred according
to ``privacy.blur``, scaled, drawn on and encoded. A small per-camera cache answers several viewers
of the same frame with one encode; a semaphore caps concurrent encodes (``api.snapshot_workers``).

Privacy: ``people`` blurs every box whose label is in ``privacy.blur_labels``; ``faces`` blurs faces
found by OpenCV's Haar cascade where this OpenCV build has one (OpenCV 5 moved it out of the main
package), and otherwise falls back to blurring people, so a missing detector never shows a face.
Blurring comes first, on the full-resolution copy, so no drawing reveals what is under it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

_COLORS = {
    "person": (60, 60, 230),
    "car": (230, 160, 40),
    "truck": (40, 200, 230),
    "bus": (40, 230, 120),
    "motorcycle": (200, 60, 200),
    "bicycle": (200, 200, 60),
}
_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


@dataclass
class Rendered:
    jpeg: bytes
    frame_ts: float
    frame_index: int
    privacy: str  # what was blurred, for the X-Privacy header


class FaceDetector:
    """OpenCV's frontal-face Haar cascade, when this OpenCV build and the unit have it."""

    def __init__(self) -> None:
        self.cascade = None
        self.why_not: str | None = None
        if not hasattr(cv2, "CascadeClassifier"):
            self.why_not = f"OpenCV {cv2.__version__} has no CascadeClassifier"
            return
        dirs = [getattr(getattr(cv2, "data", None), "haarcascades", "")] + list(_CASCADE_DIRS)
        for d in dirs:
            p = Path(d or ".") / "haarcascade_frontalface_default.xml"
            if d and p.exists():
                c = cv2.CascadeClassifier(str(p))
                if not c.empty():
                    self.cascade = c
                    return
        self.why_not = "haarcascade_frontalface_default.xml not found (apt install opencv-data)"

    def find(self, img: np.ndarray) -> list[tuple[int, int, int, int]]:
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(16, 16))
        return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in faces]


_faces: FaceDetector | None = None
_faces_lock = threading.Lock()


def face_detector() -> FaceDetector:
    global _faces
    with _faces_lock:
        if _faces is None:
            _faces = FaceDetector()
        return _faces


def blur_region(img: np.ndarray, box: tuple[float, float, float, float], pad: float = 0.08) -> None:
    """Pixelate then blur ``box`` (x1, y1, x2, y2) of ``img`` in place, padded by ``pad`` of its size."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    px, py = (x2 - x1) * pad, (y2 - y1) * pad
    x1, y1 = max(0, int(x1 - px)), max(0, int(y1 - py))
    x2, y2 = min(w, int(np.ceil(x2 + px))), min(h, int(np.ceil(y2 + py)))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    roi = img[y1:y2, x1:x2]
    small = cv2.resize(roi, (max(1, (x2 - x1) // 16), max(1, (y2 - y1) // 16)), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    k = max(3, ((min(x2 - x1, y2 - y1) // 8) | 1))
    img[y1:y2, x1:x2] = cv2.GaussianBlur(coarse, (k, k), 0)


def apply_privacy(img: np.ndarray, detections: list[Any], mode: str, labels: list[str]) -> str:
    """Blur ``img`` in place as ``mode`` says; returns what was done (for the X-Privacy header)."""
    if mode == "off":
        return "off"
    people = [d.box for d in detections if d.label in labels]
    if mode == "faces":
        fd = face_detector()
        if fd.cascade is not None:
            faces = fd.find(img)
            for f in faces:
                blur_region(img, f, pad=0.15)
            return f"faces blurred: {len(faces)}"
        for b in people:
            blur_region(img, b)
        return f"people blurred: {len(people)} (no face detector: {fd.why_not})"
    for b in people:
        blur_region(img, b)
    return f"people blurred: {len(people)}"


def _color(label: str) -> tuple[int, int, int]:
    if label in _COLORS:
        return _COLORS[label]
    h = sum(label.encode()) * 47 % 180
    hsv = np.uint8([[[h, 200, 230]]])
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


def draw(img: np.ndarray, detections: list[Any], cam_cfg: Any, scale: float, caption: str) -> None:
    """Zones, lines, boxes and a caption onto ``img`` (already scaled by ``scale``)."""
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
    for name, pts in lines:
        p = np.round(pts * scale).astype(np.int32)
        cv2.line(img, tuple(p[0]), tuple(p[1]), (0, 255, 255), th + 1)
        _text(img, f"line {name}", (int(p[0][0]) + 4, int(p[0][1]) - 6), fs, (0, 255, 255))
    for d in detections:
        x1, y1, x2, y2 = (round(v * scale) for v in d.box)
        c = _color(d.label)
        cv2.rectangle(img, (x1, y1), (x2, y2), c, th)
        _text(img, f"{d.label} {d.score:.2f}", (x1, max(12, y1 - 4)), fs, c)
    _text(img, caption, (6, h - 8), fs, (255, 255, 255))


def _text(img: np.ndarray, text: str, org: tuple[int, int], fs: float, color: tuple[int, int, int]) -> None:
    """Text on a dark plate (readable on any background)."""
    x, y = int(org[0]), int(org[1])
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
    cv2.rectangle(img, (x - 2, y - th - 3), (x + tw + 2, y + base), (20, 20, 20), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, fs, color, 1, cv2.LINE_AA)


class SnapshotRenderer:
    """Renders and caches the latest snapshot of each camera."""

    def __init__(self, workers: int = 2) -> None:
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
            privacy = apply_privacy(img, dets, blur, blur_labels)
            scale = 1.0
            if max_width and img.shape[1] > max_width:
                scale = max_width / img.shape[1]
                img = cv2.resize(
                    img, (max_width, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA
                )
            from agent.sections import iso_utc

            caption = f"{camera}  {iso_utc(f.ts)}  frame {f.index}  {len(dets)} detection(s)"
            draw(img, dets, cam_cfg, scale, caption)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            self.encoded += 1
        out = Rendered(buf.tobytes(), f.ts, f.index, privacy)
        with self._lock:
            self._cache[camera] = (key, out)
        return out
