"""The pipeline's cameras + inference stages (run by :mod:`agent.inference.part`), as a mixin of
:class:`agent.pipeline.Pipeline`.

Start: the models (engines), the cameras, each camera's analytics runner, the results stage, one
inference worker per model, then the cameras' capture threads. A camera whose model cannot be
loaded is reported ``down`` with the model's error. A reload adds, removes or reopens cameras here
(:meth:`VisionStages._add_camera`, :meth:`VisionStages._remove_camera`). The analytics runners get
what their incidents need (the clock's quality, the outbox, snapshots filtered for privacy).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig, CameraConfig
from agent.errors import AgentError
from agent.sources.camera import CameraSource
from agent.stages import InferenceWorker, ResultsWorker
from agent.store.writer import Writer

if TYPE_CHECKING:
    from agent.analytics.runner import AnalyticsRunner
    from agent.inference.engine import Engine
    from agent.sync.service import SyncService
    from agent.types import InferenceResult
    from firmware_bridge.service import SensorService

log = logging.getLogger(__name__)


class VisionStages:
    """The cameras, engines, inference workers, results stage and analytics of a pipeline."""

    # the pipeline's state these stages use (set in Pipeline.__init__)
    cfg: AgentConfig
    writer: Writer | None
    cameras: dict[str, CameraSource]
    engines: dict[str, Engine]
    engine_errors: dict[str, str]
    workers: list[InferenceWorker]
    results: ResultsWorker | None
    results_q: queue.Queue[InferenceResult]
    analytics: dict[str, AnalyticsRunner]

    if TYPE_CHECKING:  # the running parts' services (Pipeline's properties)

        @property
        def sync(self) -> SyncService | None: ...

        @property
        def sensors(self) -> SensorService | None: ...

        def time_left(self) -> float: ...

    # -- start / stop -------------------------------------------------------------------------------
    def start_vision(self, writer: Writer) -> None:
        cfg = self.cfg
        self._load_engines()
        if self.sync is not None:
            self.sync.models_ready()  # the birth names the active accelerator
        from agent.analytics.runner import AnalyticsRunner as Runner

        active = [c for c in cfg.cameras if c.enabled]
        for cam_cfg in active:
            self.cameras[cam_cfg.name] = CameraSource(cam_cfg)
            engine = self.engines.get(self._model_of(cam_cfg))
            if Runner is not None and engine is not None:
                self.analytics[cam_cfg.name] = self._wire_runner(
                    Runner(cam_cfg.name, cam_cfg.analytics, writer, calibration=engine.calibration)
                )
        self.results = ResultsWorker(
            self.results_q,
            writer,
            cameras=self.cameras,
            accelerators={n: e.accelerator for n, e in self.engines.items()},
            analytics=self.analytics,
            store_detections=cfg.storage.store_detections,
            stats_interval_s=cfg.storage.stats_interval_s,
            shown_thresholds={c.name: self._shown_threshold(c) for c in active},
        ).start()
        self._start_workers(active)
        # sources
        for w in self.workers:
            for cam in w.cameras:
                cam.start()

    def _start_workers(self, active: list[CameraConfig]) -> None:
        """One inference worker per model, for the cameras that use it."""
        by_model: dict[str, list[CameraSource]] = {}
        for cam_cfg in active:
            by_model.setdefault(self._model_of(cam_cfg), []).append(self.cameras[cam_cfg.name])
        for model, cams in by_model.items():
            engine = self.engines.get(model)
            if engine is None:
                for cam in cams:  # reported, not fatal for the rest of the agent
                    self._model_down(cam, model)
                continue
            thresholds: dict[str, float | None] = {c.name: self._feed_threshold(c.cfg) for c in cams}
            self.workers.append(InferenceWorker(engine, cams, self.results_q, thresholds=thresholds).start())

    def _model_down(self, cam: CameraSource, model: str) -> None:
        cam.state = "down"
        cam.last_error = f"model {model} unavailable: {self.engine_errors.get(model)}"

    def stop_vision(self) -> None:
        for cam in self.cameras.values():
            cam.stop()
        for w in self.workers:
            w.stop(timeout_s=max(1.0, self.time_left()))
        if self.results is not None:
            self.results.stop(timeout_s=max(1.0, self.time_left()))

    # -- models and thresholds -------------------------------------------------------------------
    def _model_of(self, cam: CameraConfig) -> str:
        return cam.model or self.cfg.inference.model

    def _shown_threshold(self, cam: CameraConfig) -> float:
        """Least score of a detection that is stored and shown (the camera's ``threshold``)."""
        return cam.threshold if cam.threshold is not None else self.cfg.inference.threshold

    def _feed_threshold(self, cam: CameraConfig) -> float:
        """Least score the detector hands on: with analytics, down to the tracker's low threshold
        (ByteTrack's second pass needs the low-score boxes), else the shown threshold."""
        shown = self._shown_threshold(cam)
        engine = self.engines.get(self._model_of(cam))
        if engine is None or not cam.analytics.enabled:
            return shown
        low = cam.analytics.tracker.resolved(getattr(engine, "calibration", None)).low_threshold
        return shown if low is None else min(shown, low)  # resolved() always sets it

    def _load_engines(self) -> None:
        from agent.inference import load_engine

        models = {self._model_of(c) for c in self.cfg.cameras if c.enabled}
        for model in sorted(models):
            try:
                eng = load_engine(model, self.cfg.inference, self.cfg.models)
            except AgentError as exc:
                self.engine_errors[model] = str(exc)
                log.error("model %s cannot be used: %s", model, exc)
                continue
            self.engines[model] = eng
            from agent.inference.runtime import accelerator_summary

            log.info(
                "model %s: %s on %s",
                model,
                eng.family,
                accelerator_summary(eng.accelerator, eng.accelerator_reasons),
            )
            if eng.accelerator_reasons:
                log.debug("model %s: accelerators skipped: %s", model, "; ".join(eng.accelerator_reasons))

    # -- cameras added and removed by a reload ---------------------------------------------------
    def _add_camera(
        self,
        cam_cfg: CameraConfig,
        Runner: type[AnalyticsRunner] | None,
        runner: AnalyticsRunner | None = None,
    ) -> None:
        model = self._model_of(cam_cfg)
        if model not in self.engines and model not in self.engine_errors:
            from agent.inference import load_engine

            try:
                self.engines[model] = load_engine(model, self.cfg.inference, self.cfg.models)
            except AgentError as exc:
                self.engine_errors[model] = str(exc)
        cam = CameraSource(cam_cfg)
        self.cameras[cam_cfg.name] = cam
        engine = self.engines.get(model)
        if engine is None:
            self._model_down(cam, model)
            return
        if runner is None and Runner is not None:
            runner = self._wire_runner(
                Runner(cam_cfg.name, cam_cfg.analytics, self.writer, calibration=engine.calibration)
            )
        if self.results is not None:
            self.results.shown_thresholds[cam_cfg.name] = self._shown_threshold(cam_cfg)
        if runner is not None:
            self.analytics[cam_cfg.name] = runner
        self._attach_to_worker(cam, engine)
        cam.start()

    def _attach_to_worker(self, cam: CameraSource, engine: Engine) -> None:
        """Hand a new camera to its model's inference worker (a new one for a model not running yet)."""
        worker = next((w for w in self.workers if w.engine is engine), None)
        if worker is None:
            worker = InferenceWorker(
                engine, [cam], self.results_q, thresholds={cam.name: self._feed_threshold(cam.cfg)}
            ).start()
            self.workers.append(worker)
            if self.results is not None:
                self.results.accelerators[engine.name] = engine.accelerator
        else:
            worker.attach(cam)
            worker.thresholds[cam.name] = self._feed_threshold(cam.cfg)
            worker.cameras = worker.cameras + [cam]  # copy-on-write: the worker iterates its own reference

    def _remove_camera(self, name: str, keep_analytics: bool = False) -> None:
        cam = self.cameras.pop(name, None)
        if cam is None:
            return
        cam.stop()
        for w in self.workers:
            if cam in w.cameras:
                w.cameras = [c for c in w.cameras if c is not cam]
        runner = self.analytics.get(name)
        if runner is not None and not keep_analytics:
            del self.analytics[name]
            if self.results is not None:
                self.results.call_soon(runner.flush)

    # -- incidents ---------------------------------------------------------------------------------
    def _wire_runner(self, runner: AnalyticsRunner) -> AnalyticsRunner:
        """Give a camera's analytics what its incidents need: the clock's quality, the outbox, a place
        and a privacy filter for snapshots."""
        runner.clock = self.clock_quality
        if self.sync is not None:
            runner.event_writes = self.sync.event_writes
            runner.on_event_queued = self.sync.notify
        runner.snapshot_dir = Path(self.cfg.storage.path).resolve().parent / "incidents"
        runner.snapshot_image = self._incident_snapshot
        return runner

    def sensor_listeners(self) -> list[tuple[str, str, Callable[[list[object], float], None]]]:
        """The cameras' radar feeds, for the sensors part: ``(sensor, "camera NAME", feed)``."""
        return [
            (runner.cfg.radar.sensor, f"camera {name}: radar", runner.radar_feed)
            for name, runner in self.analytics.items()
            if runner.cfg.radar is not None
        ]

    def _incident_snapshot(self, result: InferenceResult, camera: str) -> bytes | None:
        """The frame as a JPEG, blurred as the privacy settings say (people/faces), for the unit only.
        None when the privacy settings allow no images (``privacy.snapshots = false``)."""
        import cv2

        from agent.privacy.blur import apply_privacy
        from agent.privacy.faces import shared_finder

        priv = self.cfg.privacy
        image = getattr(result.frame, "image", None)  # already masked by the inference stage
        if not priv.snapshots or image is None:
            return None
        img = image.copy()
        faces = shared_finder(self.cfg) if priv.blur == "faces" else None
        apply_privacy(img, result.detections, priv.blur, priv.blur_labels, faces)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.api.snapshot_quality])
        return buf.tobytes() if ok else None

    def clock_quality(self) -> dict[str, Any]:
        """How far the unit's clock can be trusted: gps (NMEA time agrees), ntp (kernel synchronised),
        untrusted (GPS says the clock is off) or unsynchronised."""
        from agent.host import clock_synced

        gps = None
        if self.sensors is not None and self.sensors.has_gps_clock:
            gps = self.sensors.gps_clock()
        if gps is not None and gps.get("trusted") is False:
            return {
                "quality": "untrusted",
                "trusted": False,
                "source": "gps",
                "offset_s": gps.get("offset_s"),
            }
        if gps is not None and gps.get("trusted") is True:
            return {"quality": "gps", "trusted": True, "source": "gps", "offset_s": gps.get("offset_s")}
        if clock_synced():
            return {"quality": "ntp", "trusted": True, "source": "kernel", "offset_s": None}
        return {"quality": "unsynchronised", "trusted": False, "source": "kernel", "offset_s": None}

    # -- status ----------------------------------------------------------------------------------
    def vision_status(self) -> Mapping[str, object]:
        """The cameras + inference part's keys of the status snapshot."""
        out: dict[str, Any] = {
            "cameras": self._cameras_status(),
            **self._models_status(),
            "inference": {
                w.engine.name: {
                    "frames": w.frames,
                    "errors": w.errors,
                    "last_error": w.last_error,
                    "dropped_results": w.dropped_results,
                }
                for w in self.workers
            },
        }
        if self.analytics:
            out["analytics"] = {}
            for name, r in self.analytics.items():
                try:
                    out["analytics"][name] = r.state()
                except Exception as exc:
                    out["analytics"][name] = {"error": str(exc)}
        return out

    def _cameras_status(self) -> dict[str, dict[str, Any]]:
        cams = {}
        for name, cam in self.cameras.items():
            h = cam.health()
            if self.results is not None:
                h.update(self.results.recent.get(name, {}))
                h["frames_inferred"] = (
                    int(self.results.totals[name]["frames"]) if name in self.results.totals else 0
                )
            if h["state"] in ("stalled", "reconnecting", "down", "ended", "stopped"):
                h["fps"] = 0.0  # no frame is coming: the last window's rate is history
            h["model"] = self._model_of(cam.cfg)
            cams[name] = h
        return cams

    def _models_status(self) -> dict[str, Any]:
        engines = {
            n: {
                "family": e.family,
                "accelerator": e.accelerator,
                "reasons": list(e.accelerator_reasons),
                "path": str(e.path),
                **(e.accelerator_status() if hasattr(e, "accelerator_status") else {}),
            }
            for n, e in self.engines.items()
        }
        main = engines.get(self.cfg.inference.model) or next(iter(engines.values()), None)
        return {
            # the main model (inference.model, else the first loaded) for the birth message
            "model": self.cfg.inference.model,
            "accelerator": main["accelerator"] if main else None,
            "accelerator_fallback": main.get("fallback") if main else None,
            "models": engines,
            "model_errors": dict(self.engine_errors),
        }
