"""Speeds from a four-point ground-plane calibration (a homography image -> metres).

Accuracy, in short (docs/analytics.md has the long form):

* The speed is a distance on the ground divided by the time between two frames' timestamps.
  Frame timestamps come from capture (``Frame.ts``); jitter of a few ms over a 1-2 s passage is
  well under 1 %. Timestamps taken after a decode queue (late by a variable delay) are not.
* The anchor is the bottom centre of the box: the point where the object meets the road. Boxes
  that are cut by the frame edge, or tall vehicles seen obliquely, move that point.
* The homography is exact only for points on the road plane: calibration error of a few pixels in
  the image points, or a few centimetres in the measured distances, scales every speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from agent.analytics.config import CalibrationConfig
from agent.analytics.geometry import to_pixels


class GroundPlane:
    """Maps image pixels to ground metres through a homography from four point pairs."""

    def __init__(
        self,
        image_points: Sequence[Sequence[float]] | np.ndarray,
        world_points: Sequence[Sequence[float]] | np.ndarray,
    ) -> None:
        src = np.asarray(image_points, dtype=np.float32).reshape(4, 2)
        dst = np.asarray(world_points, dtype=np.float32).reshape(4, 2)
        if _degenerate(src) or _degenerate(dst):
            raise ValueError("calibration: three of the four points lie on one line")
        self.H = cv2.getPerspectiveTransform(src, dst).astype(float)

    @classmethod
    def from_config(cls, cfg: CalibrationConfig, frame_size: tuple[int, int] | None) -> GroundPlane:
        return cls(to_pixels(cfg.image_points, cfg.units, frame_size, "calibration"), cfg.world_points)

    def to_world(self, pts: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=float).reshape(-1, 2)
        q = np.hstack([p, np.ones((len(p), 1))]) @ self.H.T
        return q[:, :2] / q[:, 2:3]

    def distance_m(self, a: Sequence[float], b: Sequence[float]) -> float:
        w = self.to_world([a, b])
        return float(np.hypot(*(w[1] - w[0])))

    def speed_kmh(self, a: Sequence[float], ts_a: float, b: Sequence[float], ts_b: float) -> float | None:
        dt = abs(ts_b - ts_a)
        if dt <= 0:
            return None
        return self.distance_m(a, b) / dt * 3.6


def _degenerate(pts: np.ndarray) -> bool:
    for i in range(4):
        a, b, c = (pts[j] for j in range(4) if j != i)
        if abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])) < 1e-6:
            return True
    return False


def segment_speed_kmh(distance_m: float, ts_a: float, ts_b: float) -> float | None:
    """Speed over a known distance between two line crossings."""
    dt = abs(ts_b - ts_a)
    return distance_m / dt * 3.6 if dt > 0 else None
