"""One camera's analytics: tracker -> lines, zones, speeds -> bins -> forecasts, written to the store.

The pipeline calls :meth:`AnalyticsRunner.process` once per inferred frame, from one thread, and
stores the returned track id of each detection. Everything here is in memory and O(objects) per
frame; the database is only touched through the writer (crossings as they happen, tracks when they
end, bins and forecasts when a bin closes).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.analytics import store
from agent.analytics.bins import BinAccumulator, ClosedBin
from agent.analytics.config import DEFAULT_CLASSES, CameraAnalytics
from agent.analytics.counting import Crossing, LineCounter
from agent.analytics.forecast import DAY, Forecaster
from agent.analytics.incidents import IncidentEngine
from agent.analytics.incidents import store as incident_store
from agent.analytics.incidents.fusion import RadarFusion
from agent.analytics.speed import GroundPlane, segment_speed_kmh
from agent.analytics.tracking import Track, Tracker
from agent.analytics.zones import Zone
from agent.timefmt import iso_utc, parse_iso
from agent.types import InferenceResult

log = logging.getLogger(__name__)


class AnalyticsRunner:
    """Tracking and counting for one camera.

    Args:
        camera_name: the camera's configured name (the ``camera`` column of every row).
        cfg: its ``analytics`` section.
        writer: the store's :class:`~agent.store.writer.Writer` (``None``: keep nothing, for tools).
        frame_size: (width, height) of the frames, needed for normalized points; taken from the
            first frame when not given.
        calibration: the detector model's score calibration (tracker thresholds, from its catalog
            entry); tracker settings left unset in the config are taken from it.
    """

    def __init__(
        self,
        camera_name: str,
        cfg: CameraAnalytics,
        writer: Any,
        *,
        frame_size: tuple[int, int] | None = None,
        calibration: dict[str, float] | None = None,
    ) -> None:
        self.camera = camera_name
        self.calibration = dict(calibration or {})
        self.cfg = cfg
        self.writer = writer
        self.frame_size = frame_size
        self.bin_s = cfg.bin_minutes * 60
        first_id = 1
        reader = self._reader()
        self.forecasters: dict[tuple[str, str], Forecaster] = {}
        self._history_rows: list[Any] = []
        self._forecast_rows: list[Any] = []
        if reader is not None:
            try:
                first_id = store.next_track_id(reader, camera_name)
                since = iso_utc(time.time() - cfg.forecast.history_days * DAY)
                self._history_rows = store.load_history(reader, camera_name, self.bin_s, since)
                self._forecast_rows = store.load_forecasts(
                    reader, camera_name, iso_utc(time.time() - cfg.forecast.backtest_days * DAY)
                )
            finally:
                reader.close()
        self.tracker = Tracker(cfg.tracker.resolved(self.calibration), first_id=first_id)
        self.lines: dict[str, LineCounter] = {}
        self.zones: dict[str, Zone] = {}
        self.ground: GroundPlane | None = None
        self.bins = BinAccumulator(self.bin_s, [], [])
        self._meta: dict[int, dict[str, Any]] = {}
        self._seg_marks: dict[int, dict[str, tuple[float, tuple[float, float]]]] = {}
        self.totals: Counter[tuple[str, str, str]] = Counter()
        self.frames = 0
        self.epochs = 0
        self.last_forecast: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.speeds_recent: list[float] = []
        self._built = False
        self._ref_size: tuple[int, int] | None = None  # the size pixel points were drawn for
        self._epoch: int | None = None
        self.track_classes: set[str] = set(DEFAULT_CLASSES)
        self.min_score = self.tracker.cfg.low_threshold
        # incidents and radar fusion (wired by the pipeline; all optional)
        self.incidents: IncidentEngine | None = None
        self.fusion: RadarFusion | None = None
        self.clock: Callable[[], dict[str, Any]] | None = None
        self.event_writes: Callable[[str, dict[str, Any]], Callable[[Any], Any]] | None = None
        self.on_event_queued: Callable[[], None] | None = None
        self.snapshot_dir: Path | None = None
        self.snapshot_image: Callable[[Any, str], bytes | None] | None = None
        self.events_emitted = 0
        if cfg.radar is not None:  # readings may come before the first frame
            line = next(lc for lc in cfg.lines if lc.name == cfg.radar.line)
            self.fusion = RadarFusion(cfg.radar, line.directions)
        self._incident_cfg: Any = None

    # -- setup -----------------------------------------------------------------------------------
    def _reader(self):
        db = getattr(self.writer, "database", None)
        if db is None:
            return None
        try:
            return db.reader()
        except Exception:  # a missing file is a fresh start
            return None

    def _build(self) -> None:
        cfg = self.cfg
        old_lines = self.lines
        self.lines = {}
        if self._ref_size is None:
            self._ref_size = self.frame_size
        for lc in cfg.lines:
            prev = old_lines.get(lc.name)
            lc = self._fit(lc, "points")
            self.lines[lc.name] = (
                prev if prev is not None and prev.cfg == lc else LineCounter(lc, self.frame_size)
            )
        old_zones = self.zones
        self.zones = {}
        for zc in cfg.zones:
            prev_z = old_zones.get(zc.name)
            zc = self._fit(zc, "points")
            self.zones[zc.name] = (
                prev_z if prev_z is not None and prev_z.cfg == zc else Zone(zc, self.frame_size)
            )
        self.ground = (
            GroundPlane.from_config(self._fit(cfg.calibration, "image_points"), self.frame_size)
            if cfg.calibration
            else None
        )
        self._build_incidents()
        keys = [(lc.name, d, c) for lc in cfg.lines for d in lc.directions for c in lc.classes]
        self.track_classes = (
            {c for lc in cfg.lines for c in lc.classes}
            | {c for zc in cfg.zones for c in zc.classes}
            | {c for r in cfg.incidents for c in r.classes}
        )
        if not self.track_classes:
            self.track_classes = set(DEFAULT_CLASSES)
        self.bins.set_keys(keys, list(self.zones))
        if cfg.forecast.enabled:
            for lc in cfg.lines:
                for d in lc.directions:
                    if (lc.name, d) not in self.forecasters:
                        self.forecasters[(lc.name, d)] = self._new_forecaster(lc.name, d)
        self._built = True

    def _fit(self, item: Any, field: str) -> Any:
        """Pixel points are pixels of the first frame size seen; at another size they are scaled
        (normalized points follow the frame by themselves)."""
        ref, size = self._ref_size, self.frame_size
        if ref is None or size is None or ref == size:
            return item
        pts = np.asarray(getattr(item, field), dtype=float).reshape(-1, 2)
        if item.units == "norm" or (item.units == "auto" and bool(np.all((pts >= 0) & (pts <= 1)))):
            return item
        scaled = pts * np.array([size[0] / ref[0], size[1] / ref[1]])
        return item.model_copy(update={field: [list(p) for p in scaled.tolist()], "units": "px"})

    def _build_incidents(self) -> None:
        cfg = self.cfg
        if self.incidents is not None:
            if self._incident_cfg == (cfg.incidents, cfg.zones, cfg.lines, cfg.calibration):
                pass  # unchanged: open incidents go on
            else:
                now = self.tracker._last_ts or time.time()
                for ev in self.incidents.close(now):
                    self._emit_incident(ev, None)
                self.incidents = None
        if self.incidents is None and (cfg.incidents or cfg.radar is not None):
            lines = {lc.name: lc for lc in cfg.lines}
            self.incidents = IncidentEngine(
                self.camera, cfg.incidents, self.zones, lines, self.ground, self.frame_size, self._clock
            )
            self._incident_cfg = (cfg.incidents, cfg.zones, cfg.lines, cfg.calibration)
        if cfg.radar is None:
            self.fusion = None
        elif self.fusion is None or self.fusion.cfg != cfg.radar:
            line = next(lc for lc in cfg.lines if lc.name == cfg.radar.line)
            self.fusion = RadarFusion(cfg.radar, line.directions)

    def _clock(self) -> dict[str, Any]:
        if self.clock is None:
            return {"quality": "unknown", "trusted": None}
        try:
            return self.clock()
        except Exception as exc:  # the clock probe must never stop analytics
            return {"quality": "unknown", "trusted": None, "error": str(exc)}

    def radar_feed(self, messages: list[Any], received: float) -> None:
        """Listener for the radar sensor's messages (called on the sensor's thread)."""
        fusion = self.fusion
        if fusion is not None:
            fusion.feed(messages, received)

    def _emit_incident(self, ev: dict[str, Any], result: Any) -> None:
        """Store the incident's row and queue its event in one write, then wake the publisher."""
        self.events_emitted += 1
        snap = None
        if ev["phase"] == "start" and result is not None and self._rule_snapshot(ev["rule"]):
            snap = self._save_snapshot(ev["id"], result)
        if self.writer is None:
            return
        now = iso_utc(time.time())
        enqueue = self.event_writes("incident", ev) if self.event_writes is not None else None

        def fn(conn: Any) -> None:
            incident_store.upsert(conn, ev, now, snap)
            if enqueue is not None:
                enqueue(conn)

        from agent.sync import outbox

        outbox.submit(self.writer, fn, kind="incidents", block=True, urgent=True)
        if self.on_event_queued is not None:
            self.on_event_queued()

    def _rule_snapshot(self, rule: str) -> bool:
        return any(r.name == rule and r.snapshot for r in self.cfg.incidents)

    def _save_snapshot(self, incident_id: str, result: Any) -> str | None:
        if self.snapshot_dir is None or self.snapshot_image is None:
            return None
        try:
            data = self.snapshot_image(result, self.camera)
            if not data:
                return None
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            path = self.snapshot_dir / f"{incident_id}.jpg"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            return str(path)
        except Exception as exc:  # a snapshot is optional; the event is not
            log.warning("incident %s: snapshot not kept: %s", incident_id, exc)
            return None

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
        from agent.analytics.forecast import Prediction

        for ln, d, issued, h, ts0, ts1, pred, actual in self._forecast_rows:
            if ln == line and d == direction and h in f.horizons:
                p = Prediction(parse_iso(issued), h, parse_iso(ts0), parse_iso(ts1), pred, actual)
                (f.scored if actual is not None else f.pending).append(p)
        return f

    def reconfigure(self, cfg: CameraAnalytics) -> None:
        """New lines, zones or calibration (SIGHUP). Counts of the bin in progress and tracks are kept;
        a changed bin length takes effect from the next start."""
        self.cfg = cfg
        self.tracker.cfg = cfg.tracker.resolved(self.calibration)
        self.min_score = self.tracker.cfg.low_threshold
        if self._built:
            self._build()

    def on_frame_size(self, size: tuple[int, int]) -> None:
        """The camera came back at another resolution (a new epoch with a new frame size).

        Lines, zones and the speed calibration are rebuilt in the new pixels (normalized points
        keep their place in the picture); the counts, the bin in progress and the forecasts are
        kept; tracks end here (their boxes are in the old pixels) and new ones start.
        """
        old, self.frame_size = self.frame_size, size
        log.info("analytics %s: frame size %s -> %dx%d: lines and zones rebuilt", self.camera, old, *size)
        if not self._built:
            return
        for z in self.zones.values():
            for v in z.take_closed(set()):
                self._on_visit(v)
        self._persist_tracks(self.tracker.close_all())
        self.tracker = Tracker(self.tracker.cfg, first_id=self.tracker.next_id)
        self._meta.clear()
        self._seg_marks.clear()
        if self.incidents is not None:  # its zones are in the old pixels: end what is open, rebuild
            for ev in self.incidents.close(self.tracker._last_ts or time.time()):
                self._emit_incident(ev, None)
            self.incidents = None
        self.lines, self.zones = {}, {}
        self._build()

    # -- per frame -------------------------------------------------------------------------------
    def process(self, result: InferenceResult) -> list[int | None]:
        """Track this frame's detections; count, measure and bin. Returns the track id per detection."""
        dets = result.detections
        if not self.cfg.enabled:
            return [None] * len(dets)
        frame = result.frame
        if frame.image is not None and getattr(frame.image, "ndim", 0) >= 2:
            size = (int(frame.image.shape[1]), int(frame.image.shape[0]))
            if self.frame_size is None:
                self.frame_size = size
            elif size != self.frame_size:
                self.on_frame_size(size)
        if not self._built:
            self._build()
        if self._epoch is not None and frame.epoch != self._epoch:
            self._new_epoch()
        self._epoch = frame.epoch
        ts = frame.ts
        self.frames += 1
        for closed in self.bins.advance(ts):
            self._close_bin(closed)
        # only the classes this camera's lines and zones count take part in tracking: a chair or a
        # skateboard box at a person's feet must not carry (or steal) the person's track
        idx = [i for i, d in enumerate(dets) if d.label in self.track_classes and d.score >= self.min_score]
        boxes = np.array([dets[i].box for i in idx], dtype=float).reshape(-1, 4)
        scores = np.array([dets[i].score for i in idx], dtype=float)
        labels = [dets[i].label for i in idx]
        tracked = self.tracker.update(boxes, scores, labels, ts, frame.index)
        per_det: list[Track | None] = [None] * len(dets)
        for i, t in zip(idx, tracked):
            per_det[i] = t

        rows: list[dict[str, Any]] = []
        alive: set[int] = set()
        predict_s = self.tracker.cfg.predict_s
        lines = list(self.lines.values())
        zones = list(self.zones.values())
        check_motion = self.cfg.tracker.check_motion
        for t in self.tracker.tracks:
            cx, cy, _w, h, vx, vy = t.mean[:6].tolist()  # one conversion per track and frame
            bottom, center = (cx, cy + h / 2), (cx, cy)
            if not t.matched:
                if t.confirmed:
                    alive.add(t.id)
                    if 0 < ts - t.last_ts <= predict_s:  # the detector missed it: follow its motion
                        for line in lines:
                            pt = bottom if line.cfg.anchor == "bottom_center" else center
                            line.observe(t.id, pt, h, ts, frame.index, t.label, True, True, (vx, vy))
                continue
            meta = self._meta.setdefault(t.id, {"crossings": 0})
            if "entry" not in meta:
                meta["entry"] = bottom
            meta["exit"] = bottom
            label = t.label
            v = (vx, vy) if check_motion else None
            for line in lines:
                pt = bottom if line.cfg.anchor == "bottom_center" else center
                c = line.observe(t.id, pt, h, ts, frame.index, label, t.confirmed, False, v)
                if c is not None:
                    rows.append(self._on_crossing(c, t))
            if t.confirmed:
                alive.add(t.id)
                for z in zones:
                    z.observe(t.id, bottom if z.cfg.anchor == "bottom_center" else center, ts, label)
        for z in zones:
            visits = z.take_closed(alive)
            self.bins.zone_sample(z.name, z.occupancy, entries=0)
            for v in visits:
                self._on_visit(v)
            for v in z.visits.values():
                if v.enter_ts == ts:
                    self.bins.zones[z.name].entries += 1
        if rows and self.writer is not None:
            self.writer.submit_rows("crossings", rows)
        if self.incidents is not None:
            for ev in self.incidents.observe(self.tracker.tracks, ts):
                self._emit_incident(ev, result)
        if self.fusion is not None:
            self._fused(self.fusion.poll(ts))
        closed = self.tracker.closed
        if closed:
            self._persist_tracks(closed)
        # every track in the tracker has its _meta entry by now, so more entries than tracks means
        # some left without a close: never confirmed, re-linked into an older track, or cut off by
        # a new epoch. Their state goes too, else it grows with every such track (#15 soak).
        if len(self._meta) > len(self.tracker.tracks):
            self._drop_untracked()
        return [t.id if t is not None else None for t in per_det]

    def _drop_untracked(self) -> None:
        live = {t.id for t in self.tracker.tracks}
        for tid in [t for t in self._meta if t not in live]:
            del self._meta[tid]
        for tid in [t for t in self._seg_marks if t not in live]:
            del self._seg_marks[tid]
        for line in self.lines.values():
            line.keep_only(live)

    def _fused(self, fused: list[Any]) -> None:
        sensor = self.cfg.radar.sensor if self.cfg.radar is not None else "radar"
        for f in fused:
            self._speed(f"radar:{sensor}", f.track_id, f.label, f.ts, f.radar_kmh)

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

    def _on_visit(self, v: Any) -> None:
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

    def _new_epoch(self) -> None:
        """The source was reopened (a file starting again, a camera reconnected): what was tracked
        before is not the same scene, so every track ends here and nothing crosses the seam."""
        for z in self.zones.values():
            for v in z.take_closed(set()):
                self._on_visit(v)
        self._persist_tracks(self.tracker.close_all())
        self.tracker = Tracker(self.tracker.cfg, first_id=self.tracker.next_id)
        self.epochs += 1

    # -- lifecycle -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Persist open tracks and the bin in progress (at shutdown)."""
        for z in self.zones.values():
            for v in z.take_closed(set()):
                self._on_visit(v)
        now = self.tracker._last_ts or time.time()
        if self.incidents is not None:
            for ev in self.incidents.close(now):
                self._emit_incident(ev, None)
        if self.fusion is not None:
            self._fused(self.fusion.poll(now + self.fusion.cfg.tolerance_s))
        self._persist_tracks(self.tracker.close_all())
        b = self.bins.close_partial()
        if b is not None and self.writer is not None and (b.coverage_s > 0 or any(b.counts.values())):
            self.writer.submit_fn(store.upsert_bin(self.camera, b), kind="volume_bins", block=True)

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
                    "peak": max(z.peak, self.bins.zones.get(z.name).peak if z.name in self.bins.zones else 0),
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
