"""Polygon zones: occupancy now and peak, dwell time and entry/exit of each track.

A track is inside when its anchor point is inside the polygon; it leaves only once the point is
more than ``band_px`` outside (hysteresis, so a box jittering on the edge is one visit, not many).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agent.analytics.config import ZoneConfig
from agent.analytics.geometry import to_pixels


@dataclass(slots=True)
class Visit:
    """One track's stay in a zone."""

    zone: str
    track_id: int
    label: str
    enter_ts: float
    exit_ts: float
    enter_pt: tuple[float, float]
    exit_pt: tuple[float, float]
    open: bool = True

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.exit_ts - self.enter_ts)


class Zone:
    """One polygon of one camera."""

    def __init__(self, cfg: ZoneConfig, frame_size: tuple[int, int] | None, band_px: float = 4.0) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.poly = to_pixels(cfg.points, cfg.units, frame_size, f"zone {cfg.name}").astype(np.float32)
        self.classes = set(cfg.classes)
        self.band_px = band_px
        self.visits: dict[int, Visit] = {}  # open visits by track id
        self._open = 0  # how many of them are open (kept as visits open and close)
        self.peak = 0

    def distance(self, pt: tuple[float, float]) -> float:
        """Signed distance to the polygon's edge: positive inside."""
        return float(cv2.pointPolygonTest(self.poly, (float(pt[0]), float(pt[1])), True))

    def observe(self, track_id: int, pt: tuple[float, float], ts: float, label: str) -> None:
        """Feed one observed anchor point of a confirmed track."""
        if label not in self.classes:
            return
        d = self.distance(pt)
        v = self.visits.get(track_id)
        if v is None:
            if d >= 0:
                self.visits[track_id] = Visit(self.name, track_id, label, ts, ts, pt, pt)
                self._open += 1
                self.peak = max(self.peak, self._open)
        elif d >= -self.band_px:
            if d >= 0:
                v.exit_ts, v.exit_pt = ts, pt
            v.label = label
        elif v.open:
            v.open = False
            self._open -= 1

    def take_closed(self, alive: set[int] | None = None) -> list[Visit]:
        """Remove and return the visits that ended (the track left, or is no longer in ``alive``)."""
        done = [v for tid, v in self.visits.items() if not v.open or (alive is not None and tid not in alive)]
        for v in done:
            if v.open:
                self._open -= 1
            v.open = False
            del self.visits[v.track_id]
        return done

    @property
    def occupancy(self) -> int:
        return self._open
