"""What the runner records: crossings, speeds, zone visits and tracks as rows for the writer, and
each closed bin with its radar figures and forecasts (see :mod:`agent.analytics.runner`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.analytics import store
from agent.analytics.bins import BinAccumulator, ClosedBin
from agent.analytics.config import CameraAnalytics
from agent.analytics.counting import Crossing, LineCounter
from agent.analytics.forecast import Forecaster, Prediction
from agent.analytics.incidents import IncidentEngine
from agent.analytics.incidents import store as incident_store
from agent.analytics.incidents.fusion import RadarFusion
from agent.analytics.speed import GroundPlane, segment_speed_kmh
from agent.analytics.tracking import Track, Tracker
from agent.analytics.zones import Visit, Zone
from agent.timefmt import iso_utc, parse_iso


class Recorder:
    """Rows and bins of one camera; :class:`~agent.analytics.runner.AnalyticsRunner` sets the
    attributes."""

    camera: str
    cfg: CameraAnalytics
    writer: Any
    bin_s: int
    bins: BinAccumulator
    lines: dict[str, LineCounter]
    zones: dict[str, Zone]
    ground: GroundPlane | None
    incidents: IncidentEngine | None
    fusion: RadarFusion | None
    totals: Counter[tuple[str, str, str]]
    speeds_recent: list[float]
    forecasters: dict[tuple[str, str], Forecaster]
    last_forecast: dict[tuple[str, str], list[dict[str, Any]]]
    tracker: Tracker
    frames: int
    _meta: dict[int, dict[str, Any]]
    _seg_marks: dict[int, dict[str, tuple[float, tuple[float, float]]]]
    _history_rows: list[Any]
    _forecast_rows: list[Any]

    def _on_crossing(self, c: Crossing, t: Track) -> dict[str, Any]:
        if self.fusion is not None and c.line == self.fusion.cfg.line:
            kmh = self.incidents.motion.speed(t.id)[0] if self.incidents is not None else None
            self.fusion.crossing(c.ts, c.direction, t.id, c.label, kmh)
        self.bins.add(c.line, c.direction, c.label)
        self.totals[(c.line, c.direction, c.label)] += 1
        self._meta[t.id]["crossings"] += 1
        marks = self._seg_marks.setdefault(t.id, {})
        marks[c.line] = (c.ts, c.point)
        for seg in self.cfg.speed_segments:
            if c.line in (seg.line_a, seg.line_b):
                other = seg.line_b if c.line == seg.line_a else seg.line_a
                if other in marks:
                    ts0, p0 = marks[other]
                    dist = seg.distance_m or (self.ground.distance_m(p0, c.point) if self.ground else None)
                    if dist:
                        v = segment_speed_kmh(dist, ts0, c.ts)
                        if v is not None:
                            self._speed(f"segment:{seg.name}", t.id, c.label, c.ts, v)
        return {
            "ts": iso_utc(c.ts),
            "camera": self.camera,
            "line": c.line,
            "direction": c.direction,
            "class": c.label,
            "track_id": c.track_id,
            "x": round(c.point[0], 1),
            "y": round(c.point[1], 1),
        }

    def _speed(self, source: str, track_id: int, label: str, ts: float, v: float) -> None:
        self.speeds_recent = (self.speeds_recent + [v])[-200:]
        if self.writer is not None:
            self.writer.submit_rows(
                "speeds",
                [
                    {
                        "ts": iso_utc(ts),
                        "camera": self.camera,
                        "source": source,
                        "track_id": track_id,
                        "class": label,
                        "speed_kmh": round(v, 2),
                    }
                ],
            )

    def _on_visit(self, v: Visit) -> None:
        speed = None
        if self.ground is not None and self.zones[v.zone].cfg.speed and v.exit_ts > v.enter_ts:
            speed = self.ground.speed_kmh(v.enter_pt, v.enter_ts, v.exit_pt, v.exit_ts)
            if speed is not None:
                self._speed(f"zone:{v.zone}", v.track_id, v.label, v.exit_ts, speed)
        if self.writer is not None:
            self.writer.submit_rows(
                "zone_visits",
                [
                    {
                        "camera": self.camera,
                        "zone": v.zone,
                        "track_id": v.track_id,
                        "class": v.label,
                        "enter_ts": iso_utc(v.enter_ts),
                        "exit_ts": iso_utc(v.exit_ts),
                        "dwell_s": round(v.dwell_s, 3),
                        "speed_kmh": round(speed, 2) if speed is not None else None,
                    }
                ],
            )

    def _persist_tracks(self, tracks: list[Track]) -> None:
        rows = []
        for t in tracks:
            meta = self._meta.pop(t.id, {})
            self._seg_marks.pop(t.id, None)
            for line in self.lines.values():
                line.forget(t.id)
            rows.append(store.track_row(self.camera, t, meta))
        if rows and self.writer is not None:
            self.writer.submit_fn(store.upsert_tracks(rows), kind="tracks")

    def _close_bin(self, b: ClosedBin) -> None:
        if self.writer is not None:
            self.writer.submit_fn(store.upsert_bin(self.camera, b), kind="volume_bins", block=True)
        if self.fusion is not None and self.writer is not None:
            figures = self.fusion.take_bin()
            self.writer.submit_fn(
                incident_store.upsert_fusion_bin(
                    self.camera, self.fusion.cfg.sensor, b.start, b.bin_s, figures
                ),
                kind="radar_fusion",
                block=True,
            )
        if not self.cfg.forecast.enabled:
            return
        totals = b.totals()
        for (line, direction), f in self.forecasters.items():
            if line not in self.lines:
                continue
            scored = f.observe(b.start, totals.get((line, direction), 0), b.complete)
            skill = f.skill()
            issued = f.forecast(b.start + b.bin_s)
            self.last_forecast[(line, direction)] = [
                {
                    "horizon_min": p.horizon_min,
                    "expected": round(p.predicted, 1),
                    "from": iso_utc(p.target_start),
                    "mae": skill[p.horizon_min]["mae"],
                    "mape": skill[p.horizon_min]["mape"],
                    "n": skill[p.horizon_min]["n"],
                }
                for p in issued
            ]
            if self.writer is not None:
                self.writer.submit_fn(
                    store.forecast_writes(self.camera, line, direction, issued, scored, skill),
                    kind="forecasts",
                    block=True,
                )

    def _new_forecaster(self, line: str, direction: str) -> Forecaster:
        f = Forecaster(
            self.bin_s,
            history_days=self.cfg.forecast.history_days,
            backtest_days=self.cfg.forecast.backtest_days,
        )
        for ln, d, start, vol, cov in self._history_rows:
            if ln == line and d == direction and cov >= 0.95 * self.bin_s:
                f.observe(parse_iso(start), vol)
        f.pending.clear()
        for ln, d, issued, h, ts0, ts1, pred, actual in self._forecast_rows:
            if ln == line and d == direction and h in f.horizons:
                p = Prediction(parse_iso(issued), h, parse_iso(ts0), parse_iso(ts1), pred, actual)
                (f.scored if actual is not None else f.pending).append(p)
        return f

    def _fused(self, fused: list[Any]) -> None:
        sensor = self.cfg.radar.sensor if self.cfg.radar is not None else "radar"
        for f in fused:
            self._speed(f"radar:{sensor}", f.track_id, f.label, f.ts, f.radar_kmh)

    def state(self) -> dict[str, Any]:
        """Live figures for the status API."""
        current: dict[str, dict[str, dict[str, int]]] = {}
        for (line, d, c), n in self.bins.counts.items():
            current.setdefault(line, {}).setdefault(d, {})[c] = n
        totals: dict[str, dict[str, dict[str, int]]] = {}
        for (line, d, c), n in self.totals.items():
            totals.setdefault(line, {}).setdefault(d, {})[c] = n
        sp = sorted(self.speeds_recent)
        return {
            "camera": self.camera,
            "frames": self.frames,
            "active_tracks": sum(1 for t in self.tracker.tracks if t.confirmed),
            "bin_start": iso_utc(self.bins.start) if self.bins.start is not None else None,
            "bin_minutes": self.cfg.bin_minutes,
            "current_bin": current,
            "since_start": totals,
            "zones": {
                z.name: {
                    "occupancy": z.occupancy,
                    "peak": max(z.peak, self.bins.zones[z.name].peak if z.name in self.bins.zones else 0),
                }
                for z in self.zones.values()
            },
            "speed_kmh": {"p50": _pct(sp, 50), "p85": _pct(sp, 85), "n": len(sp)},
            "forecast": {f"{line}/{d}": v for (line, d), v in self.last_forecast.items()},
            "incidents": self.incidents.state() if self.incidents is not None else None,
            "radar": self.fusion.total.as_dict() if self.fusion is not None else None,
        }


def _pct(sorted_vals: list[float], p: float) -> float | None:
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_vals) - 1)
    return round(sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo), 2)
