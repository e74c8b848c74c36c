"""Box geometry and matching for the tracker: pairwise IoU / IoA, nested-box suppression, greedy
one-to-one matching and the x1y1x2y2 -> centre-size conversion (all numpy, batched)."""

from __future__ import annotations

import numpy as np


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas (N, M) of boxes ``a`` (N,4) and ``b`` (M,4), and each one's area."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a, area_b


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4 x1y1x2y2) with every box in ``b`` (M,4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter, area_a, area_b = _overlaps(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def ioa_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller of the two areas, (N, M): 1.0 when one box holds the other."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter, area_a, area_b = _overlaps(a, b)
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)


def suppress_nested(boxes: np.ndarray, scores: np.ndarray, max_ioa: float) -> list[int]:
    """Indices kept after dropping each box mostly inside (or mostly holding) a higher-scoring one.

    SSD-style detectors often return a second, nested box for one vehicle; left alone it becomes a
    second track and a double count.
    """
    order = list(np.argsort(-scores, kind="stable"))
    if max_ioa >= 1.0 or len(order) < 2:
        return order
    ioa = ioa_matrix(boxes, boxes)
    np.fill_diagonal(ioa, 0.0)
    if ioa.max() <= max_ioa:
        return [int(i) for i in order]
    dropped = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in order:
        if dropped[i]:
            continue
        keep.append(int(i))
        dropped |= ioa[i] > max_ioa
    return keep


def greedy_match(score: np.ndarray, min_score: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken best score first, each row and column at most once, score >= min_score."""
    if score.size == 0:
        return []
    rows, cols = np.nonzero(score >= min_score)
    if len(rows) == 0:
        return []
    order = np.argsort(-score[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        out.append((r, c))
    return out


def xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    """(..., 4) x1y1x2y2 -> (..., 4) cx, cy, w, h."""
    b = np.asarray(b, dtype=float)
    out = np.empty(b.shape, dtype=float)
    out[..., :2] = (b[..., :2] + b[..., 2:]) / 2
    out[..., 2:] = b[..., 2:] - b[..., :2]
    return out


def leaving_view(
    box: tuple[float, float, float, float], v: tuple[float, float], size: tuple[int, int]
) -> bool:
    """Whether the box (x1, y1, x2, y2), moving at ``v`` (pixels per frame), has reached the edge of
    a frame of ``size`` (w, h) it is moving toward: the object is leaving the camera's view."""
    x1, y1, x2, y2 = box
    return (
        (v[0] < 0 and x1 <= 0)
        or (v[0] > 0 and x2 >= size[0])
        or (v[1] < 0 and y1 <= 0)
        or (v[1] > 0 and y2 >= size[1])
    )


def came_from_edge(
    box: tuple[float, float, float, float], v: tuple[float, float], size: tuple[int, int]
) -> tuple[float, float] | None:
    """For a box first seen at ``box`` moving at ``v`` (pixels per frame): if, followed back along
    its motion, it would touch the frame's edge within one box length, the shift (dx, dy) back along
    its motion that puts the whole box beyond that edge (where the object was before it came into
    view); else None (also for a box the edge cuts, and for one that hardly moves)."""
    speed = float(np.hypot(v[0], v[1]))
    if speed < 1.0:  # (nearly) still: no direction to follow back
        return None
    if box[0] <= 1 or box[1] <= 1 or box[2] >= size[0] - 1 or box[3] >= size[1] - 1:
        return None  # cut by the edge: its anchor is at the edge (the usual rule counts it) and its motion is the cut's
    ux, uy = v[0] / speed, v[1] / speed
    x1, y1, x2, y2 = box
    touch, gone = [], []  # distances back along the motion: to touching an edge, to being beyond it
    for u, lo, hi, edge in ((ux, x1, x2, size[0]), (uy, y1, y2, size[1])):
        if u > 1e-6:  # moving toward the far edge: it came in over the near one (0)
            touch.append(lo / u)
            gone.append(hi / u)
        elif u < -1e-6:  # moving toward 0: it came in over the far edge
            touch.append((edge - hi) / -u)
            gone.append((edge - lo) / -u)
    length = abs((x2 - x1) * ux) + abs((y2 - y1) * uy)  # the box's extent along its motion
    if not touch or min(touch) > length:
        return None
    d = min(gone)
    return (-ux * d, -uy * d)
