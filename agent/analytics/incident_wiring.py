"""The runner's incidents and radar fusion: building the engine from the config, the clock probe,
radar readings, and each incident's row, event and snapshot (see :mod:`agent.analytics.runner`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.analytics.config import CameraAnalytics
from agent.analytics.incidents import IncidentEngine
from agent.analytics.incidents import store as incident_store
from agent.analytics.incidents.fusion import RadarFusion
from agent.analytics.speed import GroundPlane
from agent.analytics.tracking import Tracker
from agent.analytics.zones import Zone
from agent.timefmt import iso_utc

log = logging.getLogger("agent.analytics.runner")


class IncidentWiring:
    """Incidents and radar fusion of one camera; :class:`~agent.analytics.runner.AnalyticsRunner`
    sets the attributes (the pipeline wires ``clock``, ``event_writes``, ``on_event_queued`` and the
    snapshot ones)."""

    camera: str
    cfg: CameraAnalytics
    writer: Any
    frame_size: tuple[int, int] | None
    tracker: Tracker
    zones: dict[str, Zone]
    ground: GroundPlane | None
    incidents: IncidentEngine | None
    fusion: RadarFusion | None
    clock: Callable[[], dict[str, Any]] | None
    event_writes: Callable[[str, dict[str, Any]], Callable[[Any], Any]] | None
    on_event_queued: Callable[[], None] | None
    snapshot_dir: Path | None
    snapshot_image: Callable[[Any, str], bytes | None] | None
    events_emitted: int
    _incident_cfg: Any

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
