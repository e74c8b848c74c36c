"""Starts the agent's parts in the order of :data:`agent.parts.PARTS` and stops them in reverse.

Start: store (database, writer: the pipeline's own) → each part, bound to this pipeline
(:meth:`agent.part.Part.bind`) and started with the writer: sync → cameras + inference (engines,
results stage, inference workers, then the cameras) → sensors → api, then any plugin part. Stop, in
reverse: the API, sensors, the cameras (in-flight frames finish, the results stage drains, analytics
flush), sync (publishes what it can within its deadline); then the writer commits everything it
accepted before the database closes. The status snapshot is the pipeline's own keys merged with
each part's :meth:`~agent.part.Part.status`.

A camera whose model cannot be loaded is reported ``down`` with the model's error; the rest of the
agent (other cameras, sensors, sync, API) keeps running.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config import AgentConfig, CameraConfig
from agent.errors import AgentError
from agent.memory import limit_malloc_arenas
from agent.part import Part
from agent.parts import PARTS
from agent.sources.camera import CameraSource
from agent.stages import InferenceWorker, ResultsWorker
from agent.store.db import Database
from agent.store.writer import Writer

if TYPE_CHECKING:
    from agent.api.server import ApiServer
    from agent.sync.service import SyncService
    from firmware_bridge.service import SensorService

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, cfg: AgentConfig, parts: Sequence[Part] = PARTS) -> None:
        self.cfg = cfg
        self.parts: tuple[Part, ...] = tuple(parts)
        self.running: list[Part] = []  # the parts bound to this pipeline, started in order
        self.database: Database | None = None
        self.writer: Writer | None = None
        self.cameras: dict[str, CameraSource] = {}
        self.engines: dict[str, Any] = {}
        self.engine_errors: dict[str, str] = {}
        self.workers: list[InferenceWorker] = []
        self.results: ResultsWorker | None = None
        # each result holds its frame (~2.7 MB at 720p): keep the queue short so memory stays bounded;
        # inference waits briefly for room (backpressure) before it drops a result (counted)
        self.results_q: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.analytics: dict[str, Any] = {}
        self.started_at: float | None = None
        self.started_mono: float | None = None
        self.pending_restart: list[str] = []
        self._stop_by = time.monotonic()
        self._lock = threading.Lock()

    # -- the running parts' services (typed, for the stages that use them) -----------------------
    @property
    def sync(self) -> SyncService | None:
        from agent.sync.part import RunningSync

        return next((p.service for p in self.running if isinstance(p, RunningSync)), None)

    @property
    def sensors(self) -> SensorService | None:
        from firmware_bridge.part import RunningSensors

        return next((p.service for p in self.running if isinstance(p, RunningSensors)), None)

    @property
    def api(self) -> ApiServer | None:
        from agent.api.part import RunningApi

        return next((p.server for p in self.running if isinstance(p, RunningApi)), None)

    def time_left(self) -> float:
        """Seconds left of the stop deadline."""
        return self._stop_by - time.monotonic()

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        cfg = self.cfg
        limit_malloc_arenas()  # before any stage thread allocates frames
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        # store
        self.database = Database(
            cfg.storage.path, check=cfg.storage.integrity_check, max_db_mb=cfg.storage.max_db_mb
        )
        self.writer = Writer(
            self.database, max_queue=cfg.storage.writer_queue, max_delay_s=cfg.storage.commit_interval_s
        ).start()
        for part in self.parts:
            running = part.bind(self)
            self.running.append(running)
            running.start(self.writer)
        log.info(
            "edge-agent %s running: %d camera(s), %d model(s), %d sensor(s)",
            __version__,
            len(self.cameras),
            len(self.engines),
            len(cfg.sensors),
        )
        return self

    # -- the cameras + inference part's stages (agent.inference.part) -----------------------------
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
                    Runner(cam_cfg.name, cam_cfg.analytics, self.writer, calibration=engine.calibration)
                )
        self.results = ResultsWorker(
            self.results_q,
            self.writer,
            cameras=self.cameras,
            accelerators={n: e.accelerator for n, e in self.engines.items()},
            analytics=self.analytics,
            store_detections=cfg.storage.store_detections,
            stats_interval_s=cfg.storage.stats_interval_s,
            shown_thresholds={c.name: self._shown_threshold(c) for c in active},
        ).start()
        by_model: dict[str, list[CameraSource]] = {}
        for cam_cfg in active:
            by_model.setdefault(self._model_of(cam_cfg), []).append(self.cameras[cam_cfg.name])
        for model, cams in by_model.items():
            engine = self.engines.get(model)
            if engine is None:
                for cam in cams:  # reported, not fatal for the rest of the agent
                    cam.state = "down"
                    cam.last_error = f"model {model} unavailable: {self.engine_errors.get(model)}"
                continue
            thresholds = {c.name: self._feed_threshold(c.cfg) for c in cams}
            self.workers.append(InferenceWorker(engine, cams, self.results_q, thresholds=thresholds).start())
        # sources
        for w in self.workers:
            for cam in w.cameras:
                cam.start()

    def stop_vision(self) -> None:
        for cam in self.cameras.values():
            cam.stop()
        for w in self.workers:
            w.stop(timeout_s=max(1.0, self.time_left()))
        if self.results is not None:
            self.results.stop(timeout_s=max(1.0, self.time_left()))

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
        return min(shown, low)

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

    # -- reload (SIGHUP) --------------------------------------------------------------------------
    def reload(self, new: AgentConfig) -> dict[str, list[str]]:
        """Apply a new config without a restart where possible.

        Cameras are added, removed or reopened (a changed source, rate or model); thresholds,
        counting lines, zones and calibration change in place, with the counts in progress kept
        (the analytics runner of a camera lives on). Sections that need a restart (storage, models,
        inference runtime/accelerator, mqtt, sensors, api) are reported, not applied.
        """
        old = self.cfg
        report: dict[str, list[str]] = {
            "added": [],
            "removed": [],
            "restarted": [],
            "updated": [],
            "needs_restart": [],
        }
        for section in (
            "device",
            "storage",
            "models",
            "inference",
            "mqtt",
            "summary",
            "sensors",
            "api",
            "privacy",
        ):
            if getattr(old, section) != getattr(new, section):
                report["needs_restart"].append(section)
        # keep the parts that need a restart as they run now; take cameras from the new file
        applied = old.model_copy(deep=True)
        applied.cameras = [c.model_copy(deep=True) for c in new.cameras]
        applied.logging = new.logging
        old_cams = {c.name: c for c in old.cameras if c.enabled}
        new_cams = {c.name: c for c in new.cameras if c.enabled}
        from agent.analytics.runner import AnalyticsRunner as Runner

        for name in old_cams.keys() - new_cams.keys():
            self._remove_camera(name)
            report["removed"].append(name)
        for name, nc in new_cams.items():
            oc = old_cams.get(name)
            if oc is None:
                self._add_camera(nc, Runner)
                report["added"].append(name)
                continue
            io_keys = (
                "source",
                "kind",
                "detect_fps",
                "loop",
                "realtime",
                "width",
                "height",
                "fourcc",
                "model",
                "reconnect_initial_s",
                "reconnect_max_s",
                "read_timeout_s",
            )
            if any(getattr(oc, k) != getattr(nc, k) for k in io_keys):
                runner = self.analytics.get(name)
                self._remove_camera(name, keep_analytics=True)
                self._add_camera(nc, Runner, runner=runner)
                report["restarted"].append(name)
            elif oc != nc:
                report["updated"].append(name)
            for w in self.workers:
                if name in w.thresholds or any(c.name == name for c in w.cameras):
                    w.thresholds[name] = self._feed_threshold(nc)
            if self.results is not None:
                self.results.shown_thresholds[name] = self._shown_threshold(nc)
            runner = self.analytics.get(name)
            if runner is not None and oc.analytics != nc.analytics and self.results is not None:
                self.results.call_soon(lambda r=runner, a=nc.analytics: r.reconfigure(a))
            cam = self.cameras.get(name)
            if cam is not None:
                cam.cfg = nc
        self.cfg = applied
        self.pending_restart = report["needs_restart"]
        return report

    def _add_camera(self, cam_cfg: CameraConfig, Runner: Any, runner: Any = None) -> None:
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
            cam.state = "down"
            cam.last_error = f"model {model} unavailable: {self.engine_errors.get(model)}"
            return
        if runner is None and Runner is not None:
            runner = self._wire_runner(
                Runner(cam_cfg.name, cam_cfg.analytics, self.writer, calibration=engine.calibration)
            )
        if self.results is not None:
            self.results.shown_thresholds[cam_cfg.name] = self._shown_threshold(cam_cfg)
        if runner is not None:
            self.analytics[cam_cfg.name] = runner
        worker = next((w for w in self.workers if w.engine is engine), None)
        if worker is None:
            worker = InferenceWorker(
                engine, [cam], self.results_q, thresholds={cam_cfg.name: self._feed_threshold(cam_cfg)}
            ).start()
            self.workers.append(worker)
            self.results.accelerators[engine.name] = engine.accelerator
        else:
            worker.attach(cam)
            worker.thresholds[cam_cfg.name] = self._feed_threshold(cam_cfg)
            worker.cameras = worker.cameras + [cam]  # copy-on-write: the worker iterates its own reference
        cam.start()

    # -- incidents ---------------------------------------------------------------------------------
    def _wire_runner(self, runner: Any) -> Any:
        """Give a camera's analytics what its incidents need: the clock's quality, the outbox, a place
        and a privacy filter for snapshots."""
        from pathlib import Path

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

    def _incident_snapshot(self, result: Any, camera: str) -> bytes | None:
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

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, deadline_s: float = 20.0) -> None:
        self._stop_by = time.monotonic() + deadline_s
        for part in reversed(self.running):
            try:
                part.stop()
            except Exception:  # one part's failure must not keep the writer from committing
                log.exception("part %s did not stop cleanly", part.name)
        if self.writer is not None:
            self.writer.stop(timeout_s=max(5.0, self.time_left()))
        if self.database is not None:
            self.database.close()
        log.info("edge-agent stopped")

    # -- state -----------------------------------------------------------------------------------
    def all_sources_ended(self) -> bool:
        dead = self._dead()
        return bool(self.cameras) and all(c.ended or c.name in dead for c in self.cameras.values())

    def _dead(self) -> set[str]:
        return {c.name for c in self.cameras.values() if self._model_of(c.cfg) not in self.engines}

    def idle(self) -> bool:
        """Every file source ended and every frame it produced is through the pipeline."""
        if not self.all_sources_ended() or any(c.slot.has_frame for c in self.cameras.values()):
            return False
        if any(w.busy for w in self.workers):
            return False
        handed_on = sum(w.results_put for w in self.workers)
        return self.results is None or self.results.handled >= handed_on

    def progress_probes(self) -> dict[str, Any]:
        """Monotonic 'last progress' of each critical thread, for the systemd watchdog."""
        probes: dict[str, Any] = {}
        for cam in self.cameras.values():
            probes[f"camera:{cam.name}"] = cam.progress
        for w in self.workers:
            probes[f"inference:{w.engine.name}"] = lambda w=w: w.last_progress
        if self.results is not None:
            probes["results"] = lambda: self.results.last_progress
        if self.writer is not None:
            probes["db-writer"] = lambda: self.writer.last_progress
        if self.sync is not None and hasattr(self.sync, "last_progress"):
            probes["mqtt"] = lambda: self.sync.last_progress
        return probes

    def status(self) -> dict[str, Any]:
        """Live state for the status API, health messages and `edge-agent status`: the pipeline's own
        keys, then each running part's :meth:`~agent.part.Part.status` merged in, in start order."""
        out: dict[str, Any] = {
            "version": __version__,
            "device": {"id": self.cfg.device.id, "site": self.cfg.device.site},
            "config_hash": self.cfg.config_hash(),
            "pending_restart": list(self.pending_restart),
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_mono, 1) if self.started_mono else 0,
            "pid": os.getpid(),
            "writer": self.writer.stats() if self.writer else None,
            "database": {
                "path": str(self.cfg.storage.path),
                "size_bytes": self.database.size_bytes() if self.database else None,
            },
        }
        for part in self.running:
            try:
                out.update(part.status())
            except Exception as exc:  # noqa: BLE001 - a status read must not fail
                out[part.name] = {"error": str(exc)}
        return out

    def vision_status(self) -> Mapping[str, object]:
        """The cameras + inference part's keys of the status snapshot."""
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
        out: dict[str, Any] = {
            "cameras": cams,
            # the main model (inference.model, else the first loaded) for the birth message
            "model": self.cfg.inference.model,
            "accelerator": main["accelerator"] if main else None,
            "accelerator_fallback": main.get("fallback") if main else None,
            "models": engines,
            "model_errors": dict(self.engine_errors),
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
