"""One camera's incident rules: fed the tracks of every frame, returns events to store and publish.

An event is a plain dict (the ``data`` of an ``incident`` event message, see
``docs/schemas/incident.schema.json``). Every incident has one ``id`` and goes ``start`` → optional
``update`` (every ``update_s`` while it lasts) → ``end``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from agent.analytics.geometry import to_pixels
from agent.analytics.incidents.config import (
    PedestrianRule,
    QueueRule,
    StoppedVehicleRule,
    WrongWayRule,
)
from agent.analytics.incidents.motion import Motion, Obs, observations
from agent.analytics.incidents.queue_rule import Queue
from agent.analytics.incidents.rules import Incident, Pedestrian, StoppedVehicle, WrongWay
from agent.timefmt import iso_utc

ClockFn = Callable[[], dict[str, Any]]


def line_direction_vector(
    points: Any, units: str, frame_size: Any, directions: tuple[str, str], name: str
) -> np.ndarray:
    """Image vector of crossing a line in direction ``name`` (the first direction is towards the
    right-hand side of the line walked from its first point to its second)."""
    p = to_pixels(points, units, frame_size, "line")
    d = p[1] - p[0]
    normal = np.array([-d[1], d[0]], dtype=float)
    return normal if name == directions[0] else -normal


class IncidentEngine:
    """Runs the rules of one camera.

    Args:
        camera: the camera's name.
        rules: its ``analytics.incidents``.
        zones: its :class:`~agent.analytics.zones.Zone` objects by name (polygons in pixels).
        lines: its line configs by name (for rules whose direction is a line's).
        ground: its ground plane or ``None``.
        frame_size: (width, height).
        clock: returns the clock quality stamped on every event.
    """

    def __init__(
        self,
        camera: str,
        rules: Iterable[Any],
        zones: dict[str, Any],
        lines: dict[str, Any],
        ground: Any,
        frame_size: tuple[int, int] | None,
        clock: ClockFn | None = None,
    ) -> None:
        self.camera = camera
        self.motion = Motion(ground)
        self.clock = clock
        self.rules: list[Any] = []
        self.counts: dict[str, int] = {}
        for r in rules:
            if not r.enabled:
                continue
            zone = zones[r.zone]
            if isinstance(r, WrongWayRule):
                if r.direction is not None:
                    vec, names = np.asarray(r.direction, dtype=float), None
                else:  # the rule's config needs a direction or a line and its direction
                    assert r.line is not None and r.line_direction is not None
                    lc = lines[r.line]
                    vec = line_direction_vector(
                        lc.points, lc.units, frame_size, lc.directions, r.line_direction
                    )
                    other = lc.directions[1] if r.line_direction == lc.directions[0] else lc.directions[0]
                    names = (r.line_direction, other)
                self.rules.append(WrongWay(r, zone, self.motion, vec, names))
            elif isinstance(r, StoppedVehicleRule):
                self.rules.append(StoppedVehicle(r, zone, self.motion))
            elif isinstance(r, PedestrianRule):
                self.rules.append(Pedestrian(r, zone, self.motion))
            elif isinstance(r, QueueRule):
                self.rules.append(Queue(r, zone, self.motion))
        self.active: dict[str, Incident] = {}
        self._last_obs: dict[int, Obs] = {}
        self.recent: list[dict[str, Any]] = []  # last events (for the status API)

    def observe(self, tracks: Iterable[Any], ts: float) -> list[dict[str, Any]]:
        """One frame's tracks (the tracker's list after its update). Returns the events it raised."""
        obs = observations(tracks)
        self.motion.observe(obs, ts)
        alive = {o.id for o in obs}
        out: list[dict[str, Any]] = []
        for rule in self.rules:
            transitions = rule.step(obs, ts) + rule.lose(alive, self._last_obs, ts)
            out += [self._event(phase, inc, ts) for phase, inc in transitions]
        for inc in list(self.active.values()):
            if ts - inc.last_update >= self._rule_cfg(inc).update_s:
                inc.last_update = ts
                out.append(self._event("update", inc, ts))
        self._last_obs = {o.id: o for o in obs}
        self.motion.forget(alive | {o.id for _, o, _ in self._orphans()})
        return out

    def close(self, ts: float) -> list[dict[str, Any]]:
        """End every open incident (the agent is stopping or the camera was removed)."""
        out = []
        for rule in self.rules:
            out += [self._event(phase, inc, ts) for phase, inc in rule.close_all(ts)]
        return out

    def _orphans(self) -> Iterable[tuple[float, Obs, Any]]:
        for r in self.rules:
            yield from getattr(r, "orphans", [])

    def _rule_cfg(self, inc: Incident) -> Any:
        return next(r.cfg for r in self.rules if r.cfg.name == inc.rule)

    def _event(self, phase: str, inc: Incident, ts: float) -> dict[str, Any]:
        if phase == "start":
            self.active[inc.id] = inc
            self.counts[inc.kind] = self.counts.get(inc.kind, 0) + 1
        elif phase == "end":
            self.active.pop(inc.id, None)
        end = inc.end_ts if phase == "end" else None
        ev = {
            "id": inc.id,
            "phase": phase,
            "kind": inc.kind,
            "rule": inc.rule,
            "camera": self.camera,
            "zone": inc.zone,
            "track_id": inc.track_id,
            "class": inc.label,
            "start": iso_utc(inc.start_ts),
            "end": iso_utc(end) if end is not None else None,
            "duration_s": round(max(0.0, (end if end is not None else ts) - inc.start_ts), 2),
            "speed_kmh": inc.speed_kmh,
            "speed_rel": inc.speed_rel,
            "heading_deg": inc.heading_deg,
            "direction": inc.direction,
            "vehicles": inc.extra.get("vehicles"),
            "queue_length_m": inc.extra.get("queue_length_m"),
            "end_reason": inc.extra.get("end_reason") if phase == "end" else None,
            "clock": self.clock() if self.clock is not None else {"quality": "unknown", "trusted": None},
        }
        self.recent = (self.recent + [ev])[-50:]
        return ev

    def state(self) -> dict[str, Any]:
        return {
            "active": [
                {
                    "id": i.id,
                    "kind": i.kind,
                    "rule": i.rule,
                    "zone": i.zone,
                    "track_id": i.track_id,
                    "start": iso_utc(i.start_ts),
                }
                for i in self.active.values()
            ],
            "raised": dict(self.counts),
        }
