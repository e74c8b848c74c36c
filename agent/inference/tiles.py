"""Detection on tiles: the model run again on parts of the frame, at its own scale.

A 300x300 detector sees a 1280x720 frame shrunk about 4x across: a car 40 px wide on a far
counting line is 9 px at the model's input, below the objects it finds well, and an SSD model
returns at most its top boxes for the whole frame. A *tile* (a square of the frame as large as the
model's input, cut out and run on its own) shows the model those objects at their real size.

The full frame is still run. Each object then belongs to one scale (as in SNIP, Singh & Davis
2018): an object whose smaller side is under :data:`SPLIT_PX` pixels at the full frame's model
input is the tiles' (where a tile covers it), a larger one the full frame's. Then:

- a tile's box that touches an inner edge of the tile (one that is not the frame's edge) is a cut
  object and is dropped: an overlapping neighbour or the full frame has it whole;
- the rest are merged class-agnostically, best score first: a box overlapping a kept one by IoU >=
  :data:`MERGE_IOU`, or lying mostly inside it (or it inside the box) by :data:`MERGE_CONTAIN`,
  is the same object.

Tiles are experimental and off by default: on ``4ku_traffic.mp4`` they raise the far line's matched
crossings from 20 to 60 of 71, but they move the other lines' counts by a few either way, and each
tile costs one more model run per frame (docs/validation.md has the figures).

``tiles = "auto"`` places tiles only where they are needed. For its first frames
(:data:`SURVEY_FRAMES`, longer when the road is empty) a camera runs on the full frame alone and
measures the objects it sees near each counting line. A line whose objects are smaller than
:data:`SMALL_PX` at the model's input gets a row of tiles along the part of the line where
objects were seen, at most :data:`MAX_TILES` per camera; near lines cost nothing. A camera with
no counting line, a recurrent model (one state per camera) or a frame already near the model's
size gets none. A list of ``[x1, y1, x2, y2]`` regions (pixels, or 0..1 of the frame) sets the
tiles by hand; ``"off"`` turns them off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agent.analytics.geometry import to_pixels
from agent.types import Detection

log = logging.getLogger(__name__)

EDGE_PX = 3.0
MERGE_IOU = 0.5
MERGE_CONTAIN = 0.7
SPLIT_PX = 20.0
SMALL_PX = 25.0
SURVEY_FRAMES = 25
SURVEY_MAX_FRAMES = 500
SURVEY_MIN_OBJECTS = 8
MAX_TILES = 8
MIN_ZOOM = 1.5  # a tile must show objects at least this much larger than the full frame does

Region = tuple[int, int, int, int]
Detector = Callable[[np.ndarray], list[Detection]]


def clip_regions(regions: Sequence[Sequence[float]], size: tuple[int, int]) -> list[Region]:
    """Regions as integer pixel boxes inside a ``size`` = (width, height) frame; a region whose
    values are all within 0..1 is a fraction of the frame; degenerate ones are left out."""
    w, h = size
    out: list[Region] = []
    for r in regions:
        x1, y1, x2, y2 = (float(v) for v in r)
        if max(x1, y1, x2, y2) <= 1.0:
            x1, x2, y1, y2 = x1 * w, x2 * w, y1 * h, y2 * h
        box = (max(0, round(x1)), max(0, round(y1)), min(w, round(x2)), min(h, round(y2)))
        if box[2] - box[0] >= 16 and box[3] - box[1] >= 16:
            out.append(box)
    return out


def model_px(box: Sequence[float], size: tuple[int, int], model: tuple[int, int]) -> float:
    """The smaller side of ``box`` (frame pixels) at the full frame's model input (stretched)."""
    return min((box[2] - box[0]) * model[0] / size[0], (box[3] - box[1]) * model[1] / size[1])


def from_tile(dets: list[Detection], region: Region, size: tuple[int, int]) -> list[Detection]:
    """A tile's detections (tile pixels) in frame pixels, less those cut by an inner edge."""
    x0, y0, x1, y1 = region
    tw, th = x1 - x0, y1 - y0
    out = []
    for d in dets:
        bx1, by1, bx2, by2 = d.box
        if (x0 > 0 and bx1 <= EDGE_PX) or (y0 > 0 and by1 <= EDGE_PX):
            continue
        if (x1 < size[0] and bx2 >= tw - EDGE_PX) or (y1 < size[1] and by2 >= th - EDGE_PX):
            continue
        out.append(Detection(d.label, d.class_id, d.score, (bx1 + x0, by1 + y0, bx2 + x0, by2 + y0)))
    return out


def _centre_in(box: Sequence[float], region: Region, margin: float) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] + margin <= cx <= region[2] - margin and region[1] + margin <= cy <= region[3] - margin


def combine(
    full: list[Detection],
    tiled: list[tuple[Region, list[Detection]]],
    size: tuple[int, int],
    model: tuple[int, int],
    limit: int,
) -> list[Detection]:
    """One box per object from the full frame's detections and each tile's (frame pixels,
    :func:`from_tile` already applied), split by scale and merged (see the module)."""
    regions = [r for r, _ in tiled]
    pool = [
        d
        for d in full
        if model_px(d.box, size, model) >= SPLIT_PX or not any(_centre_in(d.box, r, 8) for r in regions)
    ]
    for _, dets in tiled:
        pool += [d for d in dets if model_px(d.box, size, model) < SPLIT_PX]
    return merge(pool, limit)


def merge(dets: list[Detection], limit: int) -> list[Detection]:
    """Best score first; a box that is the same object as a kept one (IoU or containment) goes."""
    if len(dets) < 2:
        return dets[:limit]
    order = sorted(dets, key=lambda d: -d.score)
    boxes = np.array([d.box for d in order], dtype=np.float64)
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    kept: list[int] = []
    for i in range(len(order)):
        if kept:
            k = np.array(kept)
            ix = np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0])
            iy = np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1])
            inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
            iou = inter / np.maximum(area[k] + area[i] - inter, 1e-9)
            contain = inter / np.maximum(np.minimum(area[k], area[i]), 1e-9)
            if (iou >= MERGE_IOU).any() or (contain >= MERGE_CONTAIN).any():
                continue
        kept.append(i)
        if len(kept) >= limit:
            break
    return [order[i] for i in kept]


def _distance(points: np.ndarray, cx: float, cy: float) -> float:
    """Distance from (cx, cy) to the segment ``points``."""
    a, b = points[0], points[1]
    ab = b - a
    t = float(np.clip(np.dot([cx, cy] - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    near = a + t * ab
    return math.hypot(cx - near[0], cy - near[1])


class TilePlan:
    """One camera's tiles: fixed (a list in the config), or surveyed and placed (``"auto"``).

    Args:
        setting: the camera's ``tiles`` (``"auto"``, ``"off"`` or a list of regions).
        lines: the camera's counting lines (``LineConfig``-like: ``name``, ``points``, ``units``).
        model: the model's input (width, height).
        camera: the camera's name, for the log.
    """

    def __init__(self, setting: Any, lines: Sequence[Any], model: tuple[int, int], camera: str) -> None:
        self.setting = setting
        self.lines = list(lines)
        self.model = model
        self.camera = camera
        self.cfg: Any = None  # the camera config this plan was made for
        self.regions: list[Region] | None = None  # None: still surveying
        self.size: tuple[int, int] | None = None
        self.reason = "surveying"
        self.line_px: dict[str, float] = {}  # line -> median object size at the full frame's input
        self._seen: dict[str, list[float]] = {ln.name: [] for ln in self.lines}
        self._frames = 0
        if setting == "off" or (setting == "auto" and not self.lines):
            self.regions, self.reason = [], "off" if setting == "off" else "no counting line"

    def tiles_for(self, size: tuple[int, int]) -> list[Region]:
        """The tiles to run on a frame of ``size`` now (empty while surveying)."""
        if size != self.size:  # a new frame size: fixed tiles are re-clipped, auto ones re-surveyed
            self.size = size
            if isinstance(self.setting, list):
                self.regions, self.reason = clip_regions(self.setting, size), "configured"
            elif self.setting == "auto" and self.lines:
                self.regions, self.reason, self._frames = None, "surveying", 0
                self._seen = {ln.name: [] for ln in self.lines}
        return self.regions or []

    def observe(self, full: list[Detection], size: tuple[int, int]) -> None:
        """Survey: note the size of the full frame's objects near each line; plan when done."""
        if self.regions is not None:
            return
        self._frames += 1
        for ln in self.lines:
            pts = to_pixels(ln.points, ln.units, size, f"line {ln.name}")
            seen = self._seen[ln.name]
            for d in full:
                cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
                if _distance(pts, cx, cy) <= max(d.box[3] - d.box[1], 0.05 * size[1]):
                    seen.append(model_px(d.box, size, self.model))
        enough = all(len(s) >= SURVEY_MIN_OBJECTS for s in self._seen.values())
        if (self._frames >= SURVEY_FRAMES and enough) or self._frames >= SURVEY_MAX_FRAMES:
            self.regions = self._place(size)

    def _place(self, size: tuple[int, int]) -> list[Region]:
        w, h = size
        side = min(max(self.model), w, h)
        if max(self.model) / side < MIN_ZOOM * min(self.model[0] / w, self.model[1] / h):
            self.reason = "frame near the model's size"
            log.info("camera %s: detection tiles: none (%s)", self.camera, self.reason)
            return []
        regions: list[Region] = []
        for ln in self.lines:
            seen = self._seen[ln.name]
            if len(seen) < SURVEY_MIN_OBJECTS:
                continue
            self.line_px[ln.name] = float(np.median(seen))
            if self.line_px[ln.name] >= SMALL_PX:
                continue
            regions += _row(to_pixels(ln.points, ln.units, size, f"line {ln.name}"), side, size, regions)
        regions = regions[:MAX_TILES]
        self.reason = (
            f"{len(regions)} tile(s) of {side} px for small objects on line(s) "
            + ", ".join(f"{n} ({px:.0f} px)" for n, px in self.line_px.items() if px < SMALL_PX)
            if regions
            else "objects on every line large enough"
        )
        log.info("camera %s: detection tiles: %s", self.camera, self.reason)
        return regions


def _row(pts: np.ndarray, side: int, size: tuple[int, int], have: list[Region]) -> list[Region]:
    """Square tiles of ``side`` spread evenly over the line's whole length, overlapping by at
    least a sixth, less those whose centre an existing tile already covers well."""
    a, b = pts[0], pts[1]
    length = float(np.hypot(*(b - a)))
    unit = (b - a) / max(length, 1e-9)
    n = 1 if length <= side else math.ceil((length - side) / (side * 5 / 6)) + 1
    out: list[Region] = []
    for i in range(n):
        f = 0.5 if n == 1 else i / (n - 1)
        c = a + unit * (side / 2 + f * max(length - side, 0.0)) if length > side else (a + b) / 2
        x0 = int(min(max(c[0] - side / 2, 0), size[0] - side))
        y0 = int(min(max(c[1] - side / 2, 0), size[1] - side))
        box = (x0, y0, x0 + side, y0 + side)
        if any(_centre_in(box, r, side / 4) for r in have + out):
            continue
        out.append(box)
    return out


def detect_tiles(
    detect: Detector, image: np.ndarray, regions: list[Region]
) -> list[tuple[Region, list[Detection]]]:
    """Each tile's detections in frame pixels (``detect`` runs the model on one crop)."""
    size = (image.shape[1], image.shape[0])
    return [(r, from_tile(detect(image[r[1] : r[3], r[0] : r[2]]), r, size)) for r in regions]


def plan_for(cam_cfg: Any, engine: Any) -> TilePlan:
    """A camera's plan for ``engine``: tiles need a detector without per-camera state."""
    lines = cam_cfg.analytics.lines if cam_cfg.analytics.enabled else []
    setting = cam_cfg.tiles
    if getattr(engine, "task", "detect") != "detect" or getattr(engine, "family", "") == "recurrent":
        if isinstance(setting, list):
            log.warning("camera %s: tiles need a detector without recurrent state; not used", cam_cfg.name)
        setting = "off"
    plan = TilePlan(setting, lines, engine.input_size, cam_cfg.name)
    plan.cfg = cam_cfg
    return plan


class Plans:
    """The detection tiles of each camera that one engine serves."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.by_camera: dict[str, TilePlan] = {}

    def plan(self, cam: str, cfg: Any) -> TilePlan:
        """The camera's plan (a new one, surveyed again, when its config changed)."""
        plan = self.by_camera.get(cam)
        if plan is None or plan.cfg is not cfg:
            plan = self.by_camera[cam] = plan_for(cfg, self.engine)
        return plan

    def detections(
        self, cam: str, cfg: Any, image: np.ndarray, full: list[Detection], threshold: float | None
    ) -> list[Detection]:
        """The frame's detections: the full frame's while the camera has no tiles (a survey notes
        them), else merged with the tiles' (see the module)."""
        if getattr(self.engine, "task", None) != "detect":
            return full
        plan = self.plan(cam, cfg)
        size = (image.shape[1], image.shape[0])
        regions = plan.tiles_for(size)
        if not regions:
            plan.observe(full, size)
            return full

        def detect(crop: np.ndarray) -> list[Detection]:
            return self.engine.run_all(crop, state_key=cam, threshold=threshold).detections

        tiled = detect_tiles(detect, image, regions)
        return combine(full, tiled, size, self.engine.input_size, self.engine.cfg.max_detections)
