"""One camera's analytics: tracker -> lines, zones, speeds -> bins -> forecasts, written to the store.

The pipeline calls :meth:`AnalyticsRunner.process` once per inferred frame, from one thread, and
stores the returned track id of each detection. Everything here is in memory and O(objects) per
frame; the database is only touched through the writer (crossings as they happen, tracks when they
end, bins and forecasts when a bin closes). What it writes is :mod:`agent.analytics.recording`'s,
its incidents and radar fusion :mod:`agent.analytics.incident_wiring`'s (the runner's bases).
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
from agent.analytics.bins import BinAccumulator
from agent.analytics.boxes import came_from_edge, leaving_view
from agent.analytics.config import DEFAULT_CLASSES, CameraAnalytics
from agent.analytics.counting import Crossing, LineCounter, SameObject
from agent.analytics.forecast import DAY, Forecaster
from agent.analytics.incident_wiring import IncidentWiring
from agent.analytics.incidents import IncidentEngine
from agent.analytics.incidents.fusion import RadarFusion
from agent.analytics.recording import Recorder
from agent.analytics.speed import GroundPlane
from agent.analytics.tracking import Track, Tracker
from agent.analytics.zones import Zone
from agent.timefmt import iso_utc
from agent.types import Detection, Frame, InferenceResult

log = logging.getLogger(__name__)

#: detections a track needs before its motion is trusted to say which frame edge it came in from
_ENTRY_HITS = 5


class AnalyticsRunner(Recorder, IncidentWiring):
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
        self.same_object = SameObject()  # one object seen as two boxes counts once
        self._seg_marks: dict[int, dict[str, tuple[float, tuple[float, float]]]] = {}
        self.totals: Counter[tuple[str, str, str]] = Counter()
        self.frames = self.epochs = 0
        self.last_forecast: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.speeds_recent: list[float] = []
        self._built = False
        self._ref_size: tuple[int, int] | None = None  # the size pixel points were drawn for
        self._epoch: int | None = None
        self.track_classes: set[str] = set(DEFAULT_CLASSES)
        self.min_score = self.tracker.cfg.low_threshold or 0.0  # resolved: never None
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

    def reconfigure(self, cfg: CameraAnalytics) -> None:
        """New lines, zones or calibration (SIGHUP). Counts of the bin in progress and tracks are kept;
        a changed bin length takes effect from the next start."""
        self.cfg = cfg
        self.tracker.cfg = cfg.tracker.resolved(self.calibration)
        self.min_score = self.tracker.cfg.low_threshold or 0.0  # resolved: never None
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
        self._start_frame(frame)
        ts = frame.ts
        per_det = self._track(dets, ts, frame.index)
        rows, alive = self._follow_tracks(ts, frame.index)
        self._sample_zones(alive, ts)
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

    def _start_frame(self, frame: Frame) -> None:
        """Follow the frame size and the source's epoch, build on the first frame, close the bins
        this frame's time has passed."""
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
        self.frames += 1
        for closed in self.bins.advance(frame.ts):
            self._close_bin(closed)

    def _track(self, dets: list[Detection], ts: float, frame_index: int) -> list[Track | None]:
        """The tracker's update on the detections of the classes tracked; the track per detection."""
        # only the classes this camera's lines and zones count take part in tracking: a chair or a
        # skateboard box at a person's feet must not carry (or steal) the person's track
        idx = [i for i, d in enumerate(dets) if d.label in self.track_classes and d.score >= self.min_score]
        boxes = np.array([dets[i].box for i in idx], dtype=float).reshape(-1, 4)
        scores = np.array([dets[i].score for i in idx], dtype=float)
        labels = [dets[i].label for i in idx]
        tracked = self.tracker.update(boxes, scores, labels, ts, frame_index)
        per_det: list[Track | None] = [None] * len(dets)
        for i, t in zip(idx, tracked):
            per_det[i] = t
        return per_det

    def _follow_tracks(self, ts: float, frame_index: int) -> tuple[list[dict[str, Any]], set[int]]:
        """Every track through the lines (matched, or coasting on its motion) and the zones; the
        crossing rows and the ids of the confirmed tracks alive."""
        rows: list[dict[str, Any]] = []
        alive: set[int] = set()
        predict_s = self.tracker.cfg.predict_s
        lines = [(ln, ln.cfg.anchor == "bottom_center") for ln in self.lines.values()]
        zones = [(z, z.cfg.anchor == "bottom_center") for z in self.zones.values()]
        check_motion = self.cfg.tracker.check_motion
        for t in self.tracker.tracks:
            cx, cy, _w, h, vx, vy = t.mean[:6].tolist()  # one conversion per track and frame
            bottom, center = (cx, cy + h / 2), (cx, cy)
            if not t.matched:
                if t.confirmed:
                    alive.add(t.id)
                    if 0 < ts - t.last_ts <= predict_s:  # the detector missed it: follow its motion
                        self._coast(t, lines, (ts, frame_index), (bottom, center, h), (vx, vy), rows)
                continue
            meta = self._meta.setdefault(t.id, {"crossings": 0})
            if "entry" not in meta:
                meta["entry"], meta["first"] = bottom, (t.box, center, h, ts, frame_index)
            meta["exit"] = bottom
            label = t.label
            v = (vx, vy) if check_motion else None
            for line, at_bottom in lines:
                pt = bottom if at_bottom else center
                c = line.observe(t.id, pt, h, ts, frame_index, label, t.confirmed, False, v)
                if c is not None:
                    self._add_crossing(c, t, rows)
            if t.confirmed and t.hits >= _ENTRY_HITS and meta.get("first") is not None:
                self._entered(t, meta, lines, (vx, vy), rows)
            if t.confirmed:
                alive.add(t.id)
                for z, z_bottom in zones:
                    z.observe(t.id, bottom if z_bottom else center, ts, label)
        return rows, alive

    def _coast(self, t: Track, lines: list, when: tuple[float, int], at: tuple, v: tuple, rows: list) -> None:
        """A confirmed track the detector missed in this frame: its motion model's positions go
        through the lines; a crossing held back on them counts once its box is leaving the view."""
        (ts, frame_index), (bottom, center, h) = when, at
        gone = self.frame_size is not None and leaving_view(t.box, v, self.frame_size)
        for line, at_bottom in lines:
            line.observe(t.id, bottom if at_bottom else center, h, ts, frame_index, t.label, True, True, v)
            c = line.left_view(t.id) if gone else None
            if c is not None:
                self._add_crossing(c, t, rows)

    def _entered(self, t: Track, meta: dict[str, Any], lines: list, v: tuple, rows: list) -> None:
        """Once a confirmed track's motion is known (``_ENTRY_HITS`` detections): if it was first
        seen near the frame edge it moves away from, it came into view from beyond that edge, and
        the lines between the edge and where it was first seen count (once, at its first sighting)."""
        box, center, h, ts, frame_index = meta.pop("first")
        shift = came_from_edge(box, v, self.frame_size) if self.frame_size is not None else None
        if shift is None:
            return
        bottom = meta["entry"]
        for line, at_bottom in lines:
            first = bottom if at_bottom else center
            origin = (first[0] + shift[0], first[1] + shift[1])
            c = line.entered_view(t.id, origin, first, h, (ts, frame_index), t.label, v)
            if c is not None:
                self._add_crossing(c, t, rows)

    def _add_crossing(self, c: Crossing, t: Track, rows: list[dict[str, Any]]) -> None:
        """Record crossing ``c`` of track ``t`` unless it is another box of an object just counted."""
        if not self.same_object.duplicate(c, {u.id: np.array(u.box) for u in self.tracker.tracks}):
            rows.append(self._on_crossing(c, t))

    def _sample_zones(self, alive: set[int], ts: float) -> None:
        """Close the visits of tracks gone; sample each zone's occupancy and entries into the bin."""
        for z in self.zones.values():
            visits = z.take_closed(alive)
            self.bins.zone_sample(z.name, z.occupancy, entries=0)
            for v in visits:
                self._on_visit(v)
            for v in z.visits.values():
                if v.enter_ts == ts:
                    self.bins.zones[z.name].entries += 1

    def _drop_untracked(self) -> None:
        live = {t.id for t in self.tracker.tracks}
        for tid in [t for t in self._meta if t not in live]:
            del self._meta[tid]
        for tid in [t for t in self._seg_marks if t not in live]:
            del self._seg_marks[tid]
        for line in self.lines.values():
            line.keep_only(live)

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
