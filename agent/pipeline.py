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

The cameras + inference stages are in :mod:`agent.pipeline_vision`, what a reload changes in
:mod:`agent.pipeline_reload`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.config import AgentConfig, CameraConfig
from agent.memory import limit_malloc_arenas
from agent.part import Part
from agent.parts import PARTS
from agent.pipeline_reload import plan_reload
from agent.pipeline_vision import VisionStages
from agent.sources.camera import CameraSource
from agent.stages import InferenceWorker, ResultsWorker
from agent.store.db import Database
from agent.store.writer import Writer

if TYPE_CHECKING:
    from agent.analytics.runner import AnalyticsRunner
    from agent.api.server import ApiServer
    from agent.inference.engine import Engine
    from agent.sync.service import SyncService
    from agent.types import InferenceResult
    from firmware_bridge.service import SensorService

log = logging.getLogger(__name__)


class Pipeline(VisionStages):
    """The running agent: its store, its parts, and the cameras + inference stages
    (:class:`~agent.pipeline_vision.VisionStages`) that the vision part runs."""

    def __init__(self, cfg: AgentConfig, parts: Sequence[Part] = PARTS) -> None:
        self.cfg = cfg
        self.parts: tuple[Part, ...] = tuple(parts)
        self.running: list[Part] = []  # the parts bound to this pipeline, started in order
        self.database: Database | None = None
        self.writer: Writer | None = None
        self.cameras: dict[str, CameraSource] = {}
        self.engines: dict[str, Engine] = {}
        self.engine_errors: dict[str, str] = {}
        self.workers: list[InferenceWorker] = []
        self.results: ResultsWorker | None = None
        # each result holds its frame (~2.7 MB at 720p): keep the queue short so memory stays bounded;
        # inference waits briefly for room (backpressure) before it drops a result (counted)
        self.results_q: queue.Queue[InferenceResult] = queue.Queue(maxsize=4)
        self.analytics: dict[str, AnalyticsRunner] = {}
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

    # -- reload (SIGHUP) --------------------------------------------------------------------------
    def reload(self, new: AgentConfig) -> dict[str, list[str]]:
        """Apply a new config without a restart where possible.

        Cameras are added, removed or reopened (a changed source, rate or model); thresholds,
        counting lines, zones and calibration change in place, with the counts in progress kept
        (the analytics runner of a camera lives on). Sections that need a restart (storage, models,
        inference runtime/accelerator, mqtt, sensors, api) are reported, not applied.
        """
        plan = plan_reload(self.cfg, new)
        from agent.analytics.runner import AnalyticsRunner as Runner

        for name in plan.removed:
            self._remove_camera(name)
        for change in plan.changes:
            if change.kind == "added":
                self._add_camera(change.new, Runner)
                continue
            if change.kind == "restarted":
                runner = self.analytics.get(change.name)
                self._remove_camera(change.name, keep_analytics=True)
                self._add_camera(change.new, Runner, runner=runner)
            assert change.old is not None  # a camera that was running
            self._retune_camera(change.old, change.new)
        self.cfg = plan.applied
        report = plan.report()
        self.pending_restart = report["needs_restart"]
        return report

    def _retune_camera(self, old: CameraConfig, new: CameraConfig) -> None:
        """A running camera's new thresholds and analytics, applied in place (the counts go on)."""
        name = new.name
        for w in self.workers:
            if name in w.thresholds or any(c.name == name for c in w.cameras):
                w.thresholds[name] = self._feed_threshold(new)
        if self.results is not None:
            self.results.shown_thresholds[name] = self._shown_threshold(new)
        runner = self.analytics.get(name)
        if runner is not None and old.analytics != new.analytics and self.results is not None:
            self.results.call_soon(lambda r=runner, a=new.analytics: r.reconfigure(a))
        cam = self.cameras.get(name)
        if cam is not None:
            cam.cfg = new

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

    def health(self) -> dict[str, Any]:
        """A liveness snapshot for the API's health check: whether the writer thread runs, seconds
        since the results stage last made progress (None without one) and each camera's state."""
        w = self.writer
        results = self.results
        return {
            "writer_alive": bool(w is not None and w.stats().get("alive", True)),
            "results_age_s": time.monotonic() - results.last_progress if results is not None else None,
            "cameras": {n: c.state for n, c in self.cameras.items()},
        }

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
