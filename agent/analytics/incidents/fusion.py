"""Radar speed fused onto tracks: an OPS243 reading belongs to the track that crosses the radar's line
at that moment (within ``tolerance_s``, with the matching direction sign).

Readings arrive on the sensor's thread (:meth:`RadarFusion.feed`); crossings on the analytics thread
(:meth:`RadarFusion.crossing`). A crossing is matched once every reading that could belong to it has
had time to arrive (``tolerance_s`` after it). Nothing is guessed: a reading no crossing claimed and a
crossing with no reading are counted, per bin, next to the agreement between radar and vision speeds
(a check of the camera's ground-plane calibration).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.analytics.incidents.config import RadarFusionConfig


@dataclass
class FusionBin:
    crossings: int = 0
    matched: int = 0
    radar_unmatched: int = 0
    crossings_unmatched: int = 0
    radar_sum: float = 0.0
    vision_sum: float = 0.0
    pairs: int = 0  # matched crossings that also have a vision speed
    abs_diff_sum: float = 0.0
    ratio_sum: float = 0.0
    readings: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "crossings": self.crossings,
            "readings": self.readings,
            "matched": self.matched,
            "radar_unmatched": self.radar_unmatched,
            "crossings_unmatched": self.crossings_unmatched,
            "radar_mean_kmh": round(self.radar_sum / self.matched, 2) if self.matched else None,
            "vision_mean_kmh": round(self.vision_sum / self.pairs, 2) if self.pairs else None,
            "mean_abs_diff_kmh": round(self.abs_diff_sum / self.pairs, 2) if self.pairs else None,
            "mean_ratio": round(self.ratio_sum / self.pairs, 3) if self.pairs else None,
        }


@dataclass
class Fused:
    """One matched crossing."""

    ts: float
    track_id: int
    label: str
    radar_kmh: float
    vision_kmh: float | None
    reading_ts: float


@dataclass
class _Reading:
    ts: float
    kmh: float
    direction: str  # inbound / outbound
    used: bool = False


@dataclass
class _Crossing:
    ts: float
    direction: str
    track_id: int
    label: str
    vision_kmh: float | None
    extra: dict[str, Any] = field(default_factory=dict)


class RadarFusion:
    """Matches one radar's readings to the crossings of one counting line."""

    def __init__(self, cfg: RadarFusionConfig, line_directions: tuple[str, str]) -> None:
        if cfg.inbound_direction not in line_directions:
            raise ValueError(
                f"radar: inbound_direction {cfg.inbound_direction!r} is not a direction of line {cfg.line!r} {list(line_directions)}"
            )
        self.cfg = cfg
        self.inbound = cfg.inbound_direction
        self._lock = threading.Lock()
        self._readings: deque[_Reading] = deque(maxlen=4096)
        self._pending: list[_Crossing] = []
        self.bin = FusionBin()
        self.total = FusionBin()

    # sensor thread
    def feed(self, messages: list[Any], received: float) -> None:
        """A listener for the radar's decoded messages (``speed_inbound``/``speed_outbound`` km/h)."""
        with self._lock:
            for m in messages:
                for ms in getattr(m, "measurements", []):
                    if ms.metric in ("speed_inbound", "speed_outbound") and ms.value is not None:
                        self._readings.append(_Reading(received, float(ms.value), ms.metric[6:]))
                        self.bin.readings += 1
                        self.total.readings += 1

    # analytics thread
    def crossing(
        self, ts: float, direction: str, track_id: int, label: str, vision_kmh: float | None
    ) -> None:
        self._pending.append(_Crossing(ts, direction, track_id, label, vision_kmh))
        self.bin.crossings += 1
        self.total.crossings += 1

    def poll(self, now: float) -> list[Fused]:
        """Match the crossings old enough to have all their candidate readings; expire old readings."""
        tol = self.cfg.tolerance_s
        out: list[Fused] = []
        with self._lock:
            ready = [c for c in self._pending if now - c.ts >= tol]
            self._pending = [c for c in self._pending if now - c.ts < tol]
            for c in sorted(ready, key=lambda c: c.ts):
                want = "inbound" if c.direction == self.inbound else "outbound"
                cands = [
                    r
                    for r in self._readings
                    if not r.used and r.direction == want and abs(r.ts - c.ts) <= tol
                ]
                if not cands:
                    for b in (self.bin, self.total):
                        b.crossings_unmatched += 1
                    continue
                r = min(cands, key=lambda r: abs(r.ts - c.ts))
                r.used = True
                out.append(Fused(c.ts, c.track_id, c.label, r.kmh, c.vision_kmh, r.ts))
                for b in (self.bin, self.total):
                    b.matched += 1
                    b.radar_sum += r.kmh
                    if c.vision_kmh is not None and r.kmh > 0:
                        b.pairs += 1
                        b.vision_sum += c.vision_kmh
                        b.abs_diff_sum += abs(c.vision_kmh - r.kmh)
                        b.ratio_sum += c.vision_kmh / r.kmh
            oldest_pending = min((c.ts for c in self._pending), default=now)
            horizon = min(now, oldest_pending) - 2 * tol
            while self._readings and self._readings[0].ts < horizon:
                r = self._readings.popleft()
                if not r.used:
                    for b in (self.bin, self.total):
                        b.radar_unmatched += 1
        return out

    def take_bin(self) -> dict[str, Any]:
        """The figures of the bin that just closed; starts the next."""
        with self._lock:
            b, self.bin = self.bin, FusionBin()
        return b.as_dict()
