"""The analysis stages between the cameras and the writer.

- :class:`InferenceWorker`: one thread per model. It serves every camera using that model from their
  latest-frame slots (oldest waiting frame first, so no camera starves), runs the engine, and hands
  results on through a bounded queue. ``invoke()`` releases the GIL, so decoding and database work
  overlap with inference.
- :class:`ResultsWorker`: one thread. Tracking/counting (analytics), detection, classification and
  record rows (``results``: the kinds a family adapter adds), and the per-camera inference statistics
  rows; everything is written through the single writer.

Both expose ``last_progress`` (monotonic) for the systemd watchdog, and count what they drop.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

from agent.inference import tiles
from agent.privacy import masks as privacy_masks
from agent.sources.camera import CameraSource
from agent.store import result_rows
from agent.store.writer import Writer
from agent.timefmt import iso_utc
from agent.types import InferenceResult

log = logging.getLogger(__name__)

_END = object()


class InferenceWorker:
    def __init__(
        self,
        engine: Any,
        cameras: list[CameraSource],
        out: queue.Queue[Any],
        *,
        thresholds: dict[str, float | None] | None = None,
    ) -> None:
        self.engine = engine
        self.cameras = cameras
        self.out = out
        self.thresholds = thresholds or {}
        self.cond = threading.Condition()
        for cam in cameras:
            self.attach(cam)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._epochs: dict[str, int] = {}
        self.frames = 0
        self.dropped_results = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_progress = time.monotonic()
        self.busy_s = 0.0
        self.invoke_s = 0.0  # of busy_s, the time inside the interpreter's invoke() (bench)
        self.busy = False  # a frame has been taken and its result is not handed on yet
        self.results_put = 0
        self.masks: dict[str, privacy_masks.MaskSet] = {}  # per camera: its static privacy masks
        self.tiles = tiles.Plans(engine)  # per camera: its detection tiles

    def attach(self, cam: CameraSource) -> None:
        """Take frames from ``cam``: its slot wakes this worker, and its thread fits each frame to
        this model's input ahead (``Engine.prepare``), so this thread mostly runs ``invoke()``."""
        cam.slot.attach(self.cond)
        cam.prepare = getattr(self.engine, "prepare", None)

    def start(self) -> InferenceWorker:
        self._thread = threading.Thread(target=self._run, name=f"inference:{self.engine.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the frames already handed over (in-flight), then stop."""
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        if self._thread:
            self._thread.join(timeout_s)

    def _next_frame(self):
        best = None
        for cam in self.cameras:
            ts = cam.slot.peek_ts()
            if ts is not None and (best is None or ts < best[0]):
                best = (ts, cam)
        return best[1].slot.take_nowait() if best else None

    def _run(self) -> None:
        while True:
            self.last_progress = time.monotonic()
            self.busy = True  # set before taking, so "no frame anywhere" is never seen mid-hand-over
            frame = self._next_frame()
            if frame is None:
                self.busy = False
                if self._stop.is_set():
                    return
                with self.cond:
                    if not any(c.slot.has_frame for c in self.cameras):
                        self.cond.wait(0.5)
                continue
            try:
                self.process(frame)
            finally:
                self.busy = False

    def process(self, frame) -> None:
        t0 = time.perf_counter()
        cam = frame.camera
        if self._epochs.get(cam) != frame.epoch:
            if cam in self._epochs:  # the source was reopened: recurrent state starts again
                self.engine.reset_state(cam)
            self._epochs[cam] = frame.epoch
        # static privacy masks: the one spot, before the model, snapshots or anything else see the frame
        cam_cfg = next((c.cfg for c in self.cameras if c.name == cam), None)
        cfg_masks = cam_cfg.masks if cam_cfg is not None else []
        masks = self.masks[cam] = privacy_masks.current(self.masks.get(cam), cam, cfg_masks)
        try:
            if masks:  # a failure here drops the frame (below): an unmasked frame never goes on
                if not frame.image.flags.writeable:
                    frame.image = frame.image.copy()
                masks.apply(frame.image)
            out = self.engine.run_all(
                frame.image,
                state_key=cam,
                threshold=self.thresholds.get(cam),
                prepared=None if masks else frame.prepared,  # made before any mask: not for masked frames
            )
            frame.prepared = None  # the frame lives on in the results stage: one copy of the pixels
            dets, timings = out.detections, out.timings
            if cam_cfg is not None:
                dets = self.tiles.detections(cam, cam_cfg, frame.image, dets, self.thresholds.get(cam))
            if masks:
                dets = masks.filter(dets, (frame.image.shape[1], frame.image.shape[0]))
        except Exception as exc:  # a failing model must not kill the worker
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.errors <= 5 or self.errors % 100 == 0:
                log.error("inference on %s failed (%d so far): %s", cam, self.errors, exc)
            return
        total_ms = (time.perf_counter() - t0) * 1000
        self.busy_s += total_ms / 1000
        self.invoke_s += float(timings.get("invoke_ms", 0.0)) / 1000
        self.frames += 1
        res = InferenceResult(
            frame=frame,
            model=self.engine.name,
            detections=dets,
            classifications=out.classifications,
            records=out.records,
            latency_ms=float(timings.get("invoke_ms", 0.0)),
            total_ms=total_ms,
            accelerator=getattr(self.engine, "accelerator", None),
        )
        try:  # backpressure: wait briefly for the results stage, then drop (counted)
            self.out.put(res, timeout=1.0)
            self.results_put += 1
        except queue.Full:
            self.dropped_results += 1


@dataclasses.dataclass(slots=True)
class _CamStats:
    """One camera's statistics window (``inference_stats`` row when it closes)."""

    start: float
    model: str
    accelerator: str
    dropped_frames_at_start: int
    dropped_writes_at_start: int
    frames: int = 0
    dets: int = 0
    lat: list[float] = dataclasses.field(default_factory=list)
    tot: list[float] = dataclasses.field(default_factory=list)


class ResultsWorker:
    """Analytics, detection rows and inference statistics, off the inference thread."""

    def __init__(
        self,
        inq: queue.Queue[Any],
        writer: Writer,
        *,
        cameras: dict[str, CameraSource],
        accelerators: dict[str, str],
        analytics: dict[str, Any] | None = None,
        store_detections: bool = True,
        stats_interval_s: float = 10.0,
        shown_thresholds: dict[str, float] | None = None,
    ) -> None:
        self.inq = inq
        # per camera: least score stored and shown; the detector may hand on lower ones for tracking
        self.shown_thresholds: dict[str, float] = dict(shown_thresholds or {})
        self.writer = writer
        self.cameras = cameras
        self.accelerators = accelerators
        self.analytics = analytics or {}
        self.store_detections = store_detections
        self.stats_interval_s = stats_interval_s
        self._thread: threading.Thread | None = None
        self._stats: dict[str, _CamStats] = {}
        self.latest: dict[str, InferenceResult] = {}
        self.totals: dict[str, dict[str, float]] = defaultdict(lambda: {"frames": 0, "detections": 0})
        self.recent: dict[str, dict[str, float | None]] = {}
        self.last_progress = time.monotonic()
        self.errors = 0
        self.handled = 0
        self.accepted_detections = 0
        self.bad_records = 0  # records an adapter made that are not JSON (not stored)
        # called with each result after it is stored (e.g. the API's latency histograms)
        self.observers: list[Any] = []

    def start(self) -> ResultsWorker:
        self._thread = threading.Thread(target=self._run, name="results", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Process every queued result, write the last stats windows, flush analytics, stop."""
        self.inq.put(_END)
        if self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            try:
                item = self.inq.get(timeout=0.5)
            except queue.Empty:
                self.last_progress = time.monotonic()
                self._maybe_flush_stats(time.time())
                continue
            if item is _END:
                break
            self.last_progress = time.monotonic()
            if isinstance(item, InferenceResult):
                try:
                    self.handle(item)
                except Exception:
                    self.errors += 1
                    log.exception("results stage failed on a frame of %s", item.frame.camera)
                finally:
                    self.handled += 1
                continue
            if callable(item):  # a control action (e.g. reconfigure on SIGHUP), run in order with results
                try:
                    item()
                except Exception:
                    self.errors += 1
                    log.exception("results stage: control action failed")
                continue
        self._maybe_flush_stats(time.time(), force=True)
        for name, runner in self.analytics.items():
            try:
                runner.flush()
            except Exception:
                log.exception("analytics flush failed for %s", name)

    def call_soon(self, fn: Any, timeout_s: float = 10.0) -> None:
        """Run ``fn()`` on the results thread, in order with the results already queued."""
        self.inq.put(fn, timeout=timeout_s)

    def handle(self, res: InferenceResult) -> None:
        f = res.frame
        cam = f.camera
        track_ids = self._track(res)
        shown = self.shown_thresholds.get(cam)
        if shown is not None and res.detections and any(d.score < shown for d in res.detections):
            keep = [i for i, d in enumerate(res.detections) if d.score >= shown]
            track_ids = [track_ids[i] for i in keep]
            res = dataclasses.replace(res, detections=[res.detections[i] for i in keep])
        if shown is not None and res.records:  # a record with a score is shown by the same rule
            res = dataclasses.replace(
                res, records=[r for r in res.records if not result_rows.below(r, shown)]
            )
        self._store(res, track_ids)
        self._count(res)
        self.latest[cam] = res
        self._maybe_flush_stats(f.ts)
        for observe in self.observers:
            try:
                observe(res)
            except Exception:
                log.exception("results observer failed")

    def _track(self, res: InferenceResult) -> list[int | None]:
        """The camera's analytics (tracking, counting, zones) on this frame: each detection's track."""
        track_ids: list[int | None] = [None] * len(res.detections)
        runner = self.analytics.get(res.frame.camera)
        if runner is not None and res.detections is not None:
            try:
                ids = runner.process(res)
                if ids is not None and len(ids) == len(res.detections):
                    track_ids = list(ids)
            except Exception:
                self.errors += 1
                log.exception("analytics failed on %s frame %d", res.frame.camera, res.frame.index)
        return track_ids

    def _store(self, res: InferenceResult, track_ids: list[int | None]) -> None:
        """Rows for the writer: detections (with their tracks), classifications, records."""
        keys = result_rows.frame_keys(res)
        if self.store_detections and res.detections:
            rows = result_rows.detection_rows(keys, res.detections, track_ids)
            if self.writer.submit_rows("detections", rows):
                self.accepted_detections += len(rows)
        if res.classifications:
            self.writer.submit_rows(
                "classifications", result_rows.classification_rows(keys, res.classifications)
            )
        if res.records:
            rows = []
            for r in res.records:
                try:
                    rows.append(result_rows.record_row(keys, r))
                except ValueError as exc:  # the adapter's bug: counted, the rest is kept
                    self.bad_records += 1
                    if self.bad_records <= 5 or self.bad_records % 1000 == 0:
                        log.error(
                            "%s: a record was not stored (%d so far): %s", res.model, self.bad_records, exc
                        )
            self.writer.submit_rows("results", rows)

    def _count(self, res: InferenceResult) -> None:
        """This frame in the camera's statistics window and totals."""
        f = res.frame
        cam = f.camera
        st = self._stats.get(cam)
        if st is not None and res.accelerator and st.accelerator != res.accelerator:
            # the accelerator was lost (or came back): one window, one accelerator
            self._maybe_flush_stats(f.ts, force=True, only=cam)
            st = None
        if st is None:
            st = self._stats[cam] = _CamStats(
                f.ts,
                res.model,
                res.accelerator or self.accelerators.get(res.model, "cpu"),
                self._replaced(cam),
                sum(self.writer.drops.values()),
            )
        st.frames += 1
        st.lat.append(res.latency_ms)
        st.tot.append(res.total_ms)
        st.dets += len(res.detections)
        t = self.totals[cam]
        t["frames"] += 1
        t["detections"] += len(res.detections)
        if res.records:
            t["records"] = t.get("records", 0) + len(res.records)

    def _replaced(self, cam: str) -> int:
        c = self.cameras.get(cam)
        return c.slot.replaced if c else 0

    def _maybe_flush_stats(self, now: float, force: bool = False, only: str | None = None) -> None:
        for cam, st in list(self._stats.items()):
            if only is not None and cam != only:
                continue
            if not force and now - st.start < self.stats_interval_s:
                continue
            if st.frames == 0:
                continue
            dur = max(now - st.start, 1e-3)
            lat = np.asarray(st.lat)
            tot = np.asarray(st.tot)
            fps = round(st.frames / dur, 3)
            p50 = round(float(np.percentile(lat, 50)), 3)
            p95 = round(float(np.percentile(lat, 95)), 3)
            row = {
                "ts_start": iso_utc(st.start),
                "ts_end": iso_utc(now),
                "camera": cam,
                "model": st.model,
                "accelerator": st.accelerator,
                "frames": st.frames,
                "fps": fps,
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
                "total_p50_ms": round(float(np.percentile(tot, 50)), 3),
                "detections": st.dets,
                "dropped_frames": self._replaced(cam) - st.dropped_frames_at_start,
                # in this window (all writes of the agent: the writer is shared)
                "dropped_writes": sum(self.writer.drops.values()) - st.dropped_writes_at_start,
            }
            self.recent[cam] = {"fps": fps, "latency_p50_ms": p50, "latency_p95_ms": p95}
            self.writer.submit_rows("inference_stats", [row])
            del self._stats[cam]
