"""The queue rule: zone-level, many slow vehicles in a zone for long enough (the track rules are
:mod:`agent.analytics.incidents.rules`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.analytics.incidents.config import QueueRule
from agent.analytics.incidents.motion import Motion, Obs
from agent.analytics.incidents.rules import Incident, Transition


class Queue:
    """Zone-level: many slow vehicles for long enough. Ends once the condition has been false a while."""

    kind = "queue"

    def __init__(self, cfg: QueueRule, zone: Any, motion: Motion) -> None:
        self.cfg, self.zone, self.motion = cfg, zone, motion
        self.since: float | None = None
        self.false_since: float | None = None
        self.incident: Incident | None = None
        self.ended_at: float = float("-inf")
        self.fired: set[int] = set()
        self.suppressed = 0

    def measure(self, obs: list[Obs]) -> tuple[int, float | None, float | None, float | None]:
        cfg = self.cfg
        inside = [o for o in obs if o.label in cfg.classes and self.zone.distance(o.pt) >= 0]
        kmh = [k for k, _ in (self.motion.speed(o.id) for o in inside) if k is not None]
        rel = [r for _, r in (self.motion.speed(o.id) for o in inside) if r is not None]
        length = None
        if self.motion.ground is not None and len(inside) >= 2:
            w = self.motion.ground.to_world([o.pt for o in inside])
            c = w - w.mean(axis=0)
            axis = np.linalg.svd(c, full_matrices=False)[2][0]
            proj = c @ axis
            length = round(float(proj.max() - proj.min()) + 5.0, 1)  # plus about one car length
        return (
            len(inside),
            float(np.median(kmh)) if kmh else None,
            float(np.median(rel)) if rel else None,
            length,
        )

    def step(self, obs: list[Obs], ts: float) -> list[Transition]:
        cfg, out = self.cfg, []
        n, kmh, rel, length = self.measure(obs)
        slow = (
            (kmh <= cfg.max_speed_kmh) if kmh is not None else (rel is not None and rel <= cfg.max_speed_rel)
        )
        ok = n >= cfg.min_vehicles and slow
        inc = self.incident
        if ok:
            self.false_since = None
            if self.since is None:
                self.since = ts
            if inc is not None:
                inc.last_ts = ts
                inc.extra.update(vehicles=n, queue_length_m=length)
                inc.speed_kmh, inc.speed_rel = _r(kmh), _r(rel)
            elif ts - self.since >= cfg.min_duration_s and ts - self.ended_at >= cfg.cooldown_s:
                inc = Incident("queue", cfg.name, cfg.zone, self.since, last_ts=ts, last_update=ts)
                inc.extra.update(vehicles=n, queue_length_m=length)
                inc.speed_kmh, inc.speed_rel = _r(kmh), _r(rel)
                self.incident = inc
                out.append(("start", inc))
            return out
        if self.false_since is None:
            self.false_since = ts
        if ts - self.false_since >= cfg.clear_s:
            self.since = None
            if inc is not None:
                inc.end_ts = ts
                inc.extra.update(vehicles=n, end_reason="dissolved")
                out.append(("end", inc))
                self.incident = None
                self.ended_at = ts
        return out

    def lose(self, alive: set[int], last_obs: dict[int, Obs], ts: float) -> list[Transition]:
        return []

    def close_all(self, ts: float) -> list[Transition]:
        if self.incident is None:
            return []
        inc, self.incident = self.incident, None
        inc.end_ts = ts
        inc.extra["end_reason"] = "stopped"
        return [("end", inc)]


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
