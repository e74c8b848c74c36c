"""What the incident rules see of each track: its anchor point, box height and recent motion.

Only frames where a track was matched to a detection enter its history: the tracker's predicted
positions across a gap are guesses, and a rule that decides "standing still" or "driving the wrong
way" must not be fooled by them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(slots=True)
class Obs:
    """One confirmed track in one frame."""

    id: int
    label: str
    pt: tuple[float, float]  # bottom-centre anchor, pixels
    h: float  # box height, pixels
    box: tuple[float, float, float, float]
    matched: bool


def observations(tracks: Iterable[Any]) -> list[Obs]:
    """The confirmed tracks of a :class:`~agent.analytics.tracking.Tracker`, as :class:`Obs`."""
    out = []
    for t in tracks:
        if not t.confirmed:
            continue
        out.append(
            Obs(t.id, t.label, t.anchor("bottom_center"), max(float(t.mean[3]), 1.0), t.box, t.matched)
        )
    return out


class Motion:
    """Recent matched positions of every track and speeds derived from them.

    Args:
        ground: a :class:`~agent.analytics.speed.GroundPlane`, or ``None`` (speeds in box heights/s).
        window_s: speeds are measured over about this much history.
    """

    def __init__(self, ground: Any, window_s: float = 1.0) -> None:
        self.ground = ground
        self.window_s = window_s
        self._hist: dict[int, deque[tuple[float, float, float, float]]] = {}

    def observe(self, obs: Iterable[Obs], ts: float) -> None:
        for o in obs:
            if not o.matched:
                continue
            d = self._hist.setdefault(o.id, deque(maxlen=256))
            d.append((ts, o.pt[0], o.pt[1], o.h))
            while len(d) > 2 and ts - d[0][0] > 3 * self.window_s:
                d.popleft()

    def forget(self, alive: set[int]) -> None:
        for tid in [t for t in self._hist if t not in alive]:
            del self._hist[tid]

    def speed(self, tid: int) -> tuple[float | None, float | None]:
        """(km/h through the calibration or None, box heights per second or None) over the window.

        None until the track has been seen over at least a third of the window.
        """
        d = self._hist.get(tid)
        if not d or len(d) < 2:
            return None, None
        t1, x1, y1, _ = d[-1]
        old = d[0]
        for s in d:
            if t1 - s[0] <= self.window_s:
                old = s
                break
        t0, x0, y0, _ = old
        dt = t1 - t0
        if dt < self.window_s / 3:
            return None, None
        hs = np.median([s[3] for s in d])
        rel = float(np.hypot(x1 - x0, y1 - y0) / max(hs, 1.0) / dt)
        kmh = self.ground.speed_kmh((x0, y0), t0, (x1, y1), t1) if self.ground is not None else None
        return kmh, rel

    def kinematics(self, tid: int) -> tuple[float, float, float, float, float] | None:
        """(ts, x, y, vx, vy) of the track's last matched position and its velocity in px/s."""
        d = self._hist.get(tid)
        if not d:
            return None
        t1, x1, y1, _ = d[-1]
        old = next((s for s in d if t1 - s[0] <= self.window_s), d[0])
        dt = t1 - old[0]
        if dt <= 0:
            return (t1, x1, y1, 0.0, 0.0)
        return (t1, x1, y1, (x1 - old[1]) / dt, (y1 - old[2]) / dt)

    def heading_deg(self, tid: int) -> float | None:
        """Direction of travel in the image over the window: 0 = right, 90 = down the image."""
        d = self._hist.get(tid)
        if not d or len(d) < 2:
            return None
        t1, x1, y1, _ = d[-1]
        old = next((s for s in d if t1 - s[0] <= self.window_s), d[0])
        dx, dy = x1 - old[1], y1 - old[2]
        if dx == 0 and dy == 0:
            return None
        return round(float(np.degrees(np.arctan2(dy, dx))) % 360.0, 1)

    def slow(self, tid: int, max_kmh: float, max_rel: float, factor: float = 1.0) -> bool | None:
        """Is the track at or below the limit (times ``factor``)? None while its speed is unknown."""
        kmh, rel = self.speed(tid)
        if kmh is not None:
            return kmh <= max_kmh * factor
        if rel is not None:
            return rel <= max_rel * factor
        return None
