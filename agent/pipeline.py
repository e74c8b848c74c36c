"""Starts the agent's stages in dependency order and stops them in reverse.

Start: store (database, writer) → sinks (sync) → analysis (engines, results stage, inference
workers) → sources (cameras, sensors). Stop: sources first, then in-flight frames finish, the
results stage drains, analytics flush, sync publishes what it can within its deadline, and the
writer commits everything it accepted before the database closes.

A camera whose model cannot be loaded is reported ``down`` with the model's error; the rest of the
agent (other cameras, sensors, sync, API) keeps running.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import threading
import time
from typing import Any

from agent import __version__
from agent.config import AgentConfig, CameraConfig
from agent.errors import AgentError
from agent.sources.camera import CameraSource
from agent.stages import InferenceWorker, ResultsWorker
from agent.store.db import Database
from agent.store.writer import Writer

log = logging.getLogger(__name__)


def _optional(module: str, attr: str) -> Any:
    """A part that may not be built into this install (returns None when its module is absent)."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


class Pipeline:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.database: Database | None = None
        self.writer: Writer | None = None
        self.cameras: dict[str, CameraSource] = {}
        self.engines: dict[str, Any] = {}
        self.engine_errors: dict[str, str] = {}
        self.workers: list[InferenceWorker] = []
        self.results: ResultsWorker | None = None
        # each result holds its frame (~2.7 MB at 720p): keep the queue short so memory stays bounded
        self.results_q: queue.Queue[Any] = queue.Queue(maxsize=16)
        self.analytics: dict[str, Any] = {}
        self.sync: Any = None
        self.sensors: Any = None
        self.api: Any = None
        self.started_at: float | None = None
        self.started_mono: float | None = None
        self._lock = threading.Lock()

    # -- start -----------------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        cfg = self.cfg
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        # store
        self.database = Database(cfg.storage.path, check=cfg.storage.integrity_check)
        self.writer = Writer(self.database, max_queue=cfg.storage.writer_queue,
                             max_delay_s=cfg.storage.commit_interval_s).start()
        # sinks
        SyncService = _optional("agent.sync.service", "SyncService")
        if SyncService is not None:
            self.sync = SyncService(cfg, cfg.storage.path, self.writer, status=self.status)
            self.sync.start()
        # analysis
        self._load_engines()
        Runner = _optional("agent.analytics.runner", "AnalyticsRunner")
        active = [c for c in cfg.cameras if c.enabled]
        for cam_cfg in active:
            self.cameras[cam_cfg.name] = CameraSource(cam_cfg)
            if Runner is not None and self._model_of(cam_cfg) in self.engines:
                self.analytics[cam_cfg.name] = Runner(cam_cfg.name, cam_cfg.analytics, self.writer)
        self.results = ResultsWorker(self.results_q, self.writer, cameras=self.cameras,
                                     accelerators={n: e.accelerator for n, e in self.engines.items()},
                                     analytics=self.analytics, store_detections=cfg.storage.store_detections,
                                     stats_interval_s=cfg.storage.stats_interval_s).start()
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
            thresholds = {c.name: c.cfg.threshold for c in cams}
            self.workers.append(InferenceWorker(engine, cams, self.results_q, thresholds=thresholds).start())
        # sources
        for w in self.workers:
            for cam in w.cameras:
                cam.start()
        SensorService = _optional("firmware_bridge.service", "SensorService")
        if SensorService is not None and cfg.sensors:
            self.sensors = SensorService(cfg.sensors, self.writer)
            self.sensors.start()
        ApiServer = _optional("agent.api.server", "ApiServer")
        if ApiServer is not None and cfg.api.enabled:
            try:
                self.api = ApiServer(cfg, self)
                self.api.start()
            except AgentError as exc:
                log.error("local API not started: %s", exc)
                self.api = None
        log.info("edge-agent %s running: %d camera(s), %d model(s), %d sensor(s)", __version__,
                 len(self.cameras), len(self.engines), len(cfg.sensors))
        return self

    def _model_of(self, cam: CameraConfig) -> str:
        return cam.model or self.cfg.inference.model

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
            log.info("model %s: %s on %s%s", model, eng.family, eng.accelerator,
                     f" ({'; '.join(eng.accelerator_reasons)})" if eng.accelerator_reasons else "")

    # -- stop ------------------------------------------------------------------------------------
    def stop(self, deadline_s: float = 20.0) -> None:
        t_end = time.monotonic() + deadline_s
        if self.api is not None:
            self.api.stop()
        for cam in self.cameras.values():
            cam.stop()
        if self.sensors is not None:
            self.sensors.stop(timeout_s=5.0)
        for w in self.workers:
            w.stop(timeout_s=max(1.0, t_end - time.monotonic()))
        if self.results is not None:
            self.results.stop(timeout_s=max(1.0, t_end - time.monotonic()))
        if self.sync is not None:
            self.sync.stop(max(1.0, min(10.0, t_end - time.monotonic())))
        if self.writer is not None:
            self.writer.stop(timeout_s=max(5.0, t_end - time.monotonic()))
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
        return (self.all_sources_ended() and self.results_q.empty()
                and not any(c.slot.has_frame for c in self.cameras.values()))

    def progress_probes(self) -> dict[str, Any]:
        """Monotonic 'last progress' of each critical thread, for the systemd watchdog."""
        probes: dict[str, Any] = {}
        for cam in self.cameras.values():
            probes[f"camera:{cam.name}"] = cam.progress
        for w in self.workers:
            probes[f"inference:{w.engine.name}"] = (lambda w=w: w.last_progress)
        if self.results is not None:
            probes["results"] = lambda: self.results.last_progress
        if self.writer is not None:
            probes["db-writer"] = lambda: self.writer.last_progress
        if self.sync is not None and hasattr(self.sync, "last_progress"):
            probes["mqtt"] = lambda: self.sync.last_progress
        return probes

    def status(self) -> dict[str, Any]:
        """Live state for the status API, health messages and `edge-agent status`."""
        cams = {}
        for name, cam in self.cameras.items():
            h = cam.health()
            if self.results is not None:
                h.update(self.results.recent.get(name, {}))
                h["frames_inferred"] = int(self.results.totals[name]["frames"]) if name in self.results.totals else 0
            h["model"] = self._model_of(cam.cfg)
            cams[name] = h
        engines = {n: {"family": e.family, "accelerator": e.accelerator, "reasons": list(e.accelerator_reasons),
                       "path": str(e.path)} for n, e in self.engines.items()}
        out: dict[str, Any] = {
            "version": __version__,
            "device": {"id": self.cfg.device.id, "site": self.cfg.device.site},
            "config_hash": self.cfg.config_hash(),
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_mono, 1) if self.started_mono else 0,
            "pid": os.getpid(),
            "cameras": cams,
            "models": engines,
            "model_errors": dict(self.engine_errors),
            "inference": {w.engine.name: {"frames": w.frames, "errors": w.errors, "last_error": w.last_error,
                                          "dropped_results": w.dropped_results} for w in self.workers},
            "writer": self.writer.stats() if self.writer else None,
            "database": {"path": str(self.cfg.storage.path),
                         "size_bytes": self.database.size_bytes() if self.database else None},
        }
        if self.sync is not None:
            try:
                out["sync"] = self.sync.health()
            except Exception as exc:
                out["sync"] = {"error": str(exc)}
        if self.sensors is not None:
            try:
                out["sensors"] = self.sensors.health()
            except Exception as exc:
                out["sensors"] = {"error": str(exc)}
        if self.analytics:
            out["analytics"] = {}
            for name, r in self.analytics.items():
                try:
                    out["analytics"][name] = r.state()
                except Exception as exc:
                    out["analytics"][name] = {"error": str(exc)}
        return out
