"""Traffic-engineering bins: volumes per line / direction / class and zone occupancy per interval.

Bins are aligned to UTC (a 15-minute bin starts at :00, :15, :30, :45). Each closed bin records
how many seconds of it the camera actually observed (``coverage_s``): a bin cut by a restart or an
outage is stored as partial, not as a low count, and a bin the camera never saw is not stored at
all (unknown is not zero).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

MAX_GAP_S = 10.0  # a longer pause between frames is an outage, not observed time


def bin_floor(ts: float, bin_s: int) -> float:
    return math.floor(ts / bin_s) * bin_s


@dataclass(slots=True)
class ZoneBin:
    peak: int = 0
    occ_integral: float = 0.0  # occupancy x seconds
    entries: int = 0


@dataclass(slots=True)
class ClosedBin:
    start: float
    bin_s: int
    coverage_s: float
    counts: dict[tuple[str, str, str], int]  # (line, direction, class) -> n, every configured key present
    zones: dict[str, ZoneBin] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.coverage_s >= 0.95 * self.bin_s

    def totals(self) -> dict[tuple[str, str], int]:
        out: Counter[tuple[str, str]] = Counter()
        for (line, direction, _), n in self.counts.items():
            out[(line, direction)] += n
        return dict(out)


class BinAccumulator:
    """Counts of the bin in progress for one camera. Not thread-safe: one caller (the runner)."""

    def __init__(self, bin_s: int, keys: list[tuple[str, str, str]], zones: list[str]) -> None:
        self.bin_s = bin_s
        self.keys = list(keys)
        self.zone_names = list(zones)
        self.start: float | None = None
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.zones: dict[str, ZoneBin] = {}
        self.coverage_s = 0.0
        self._last_ts: float | None = None
        self._last_occ: dict[str, int] = {}

    def set_keys(self, keys: list[tuple[str, str, str]], zones: list[str]) -> None:
        """New lines/zones (reconfigure): counts already made are kept."""
        self.keys = list(keys)
        self.zone_names = list(zones)

    def advance(self, ts: float) -> list[ClosedBin]:
        """Move time to ``ts``; return the bins this closes (at most one: skipped bins are unknown)."""
        closed: list[ClosedBin] = []
        if self.start is None:
            self.start = bin_floor(ts, self.bin_s)
        elif ts >= self.start + self.bin_s:
            end = self.start + self.bin_s
            if self._last_ts is not None and end - self._last_ts <= MAX_GAP_S:
                self._add_time(end)
            closed.append(self._close())
            self.start = bin_floor(ts, self.bin_s)
            self._last_ts = self.start if ts - self.start <= MAX_GAP_S else None
        if self._last_ts is not None and ts - self._last_ts <= MAX_GAP_S:
            self._add_time(ts)
        self._last_ts = ts
        return closed

    def _add_time(self, ts: float) -> None:
        assert self._last_ts is not None
        dt = max(0.0, ts - self._last_ts)
        self.coverage_s += dt
        for name, occ in self._last_occ.items():
            self.zones.setdefault(name, ZoneBin()).occ_integral += occ * dt
        self._last_ts = ts

    def _close(self) -> ClosedBin:
        assert self.start is not None
        counts = {k: 0 for k in self.keys}
        counts.update(self.counts)
        zones = {z: self.zones.get(z, ZoneBin()) for z in self.zone_names}
        for z in zones.values():
            z.peak = max(z.peak, 0)
        out = ClosedBin(self.start, self.bin_s, min(self.coverage_s, float(self.bin_s)), counts, zones)
        self.counts = Counter()
        self.zones = {name: ZoneBin(peak=occ) for name, occ in self._last_occ.items()}
        self.coverage_s = 0.0
        return out

    def add(self, line: str, direction: str, label: str) -> None:
        self.counts[(line, direction, label)] += 1

    def zone_sample(self, zone: str, occupancy: int, entries: int = 0) -> None:
        z = self.zones.setdefault(zone, ZoneBin())
        z.peak = max(z.peak, occupancy)
        z.entries += entries
        self._last_occ[zone] = occupancy

    def close_partial(self) -> ClosedBin | None:
        """The bin in progress as it stands (flush at shutdown); counting starts a new bin afterwards."""
        if self.start is None:
            return None
        start = self.start
        out = self._close()
        self.start = start  # the same bin continues if frames keep coming
        return out
