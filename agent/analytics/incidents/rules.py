"""The track incident rules: wrong way, stopped vehicle, pedestrian (the zone-level queue rule is
:mod:`agent.analytics.incidents.queue_rule`). Each turns the tracks of one frame into lifecycle
transitions.

A rule returns ``(phase, Incident)`` pairs: ``start`` when its condition has held long enough,
``update`` now and then while it lasts, ``end`` when it is over. Track rules fire at most once per
track; a track lost for a moment (an occlusion, an ID switch) and found again at the same place
keeps its state, so one vehicle never raises two events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.analytics.incidents.config import PedestrianRule, StoppedVehicleRule, WrongWayRule
from agent.analytics.incidents.motion import Motion, Obs


@dataclass
class Incident:
    """One event, from start to end."""

    kind: str
    rule: str
    zone: str
    start_ts: float
    track_id: int | None = None
    label: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    end_ts: float | None = None
    last_ts: float = 0.0  # last time the condition was seen
    last_update: float = 0.0
    speed_kmh: float | None = None
    speed_rel: float | None = None
    heading_deg: float | None = None
    direction: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Transition = tuple[str, Incident]


class _TrackRule:
    """Per-track state with hand-over across short losses of the track."""

    def __init__(self, cfg: Any, zone: Any, motion: Motion, occlusion_s: float) -> None:
        self.cfg = cfg
        self.zone = zone
        self.motion = motion
        self.occlusion_s = occlusion_s
        self.state: dict[int, dict[str, Any]] = {}
        self.orphans: list[tuple[float, Obs, dict[str, Any]]] = []  # (lost at, last obs, state)
        self.fired: set[int] = set()
        self.suppressed = 0

    def inside(self, o: Obs) -> bool:
        return self.zone.distance(o.pt) >= 0

    def _continues(self, o: Obs, last: Obs, kin: Any, fallback_ts: float, ts: float) -> bool:
        """Is ``o`` where the object last seen as ``last`` would be by now, moving on at its velocity?"""
        t0, x0, y0, vx, vy = kin or (fallback_ts, last.pt[0], last.pt[1], 0.0, 0.0)
        gap = max(0.0, ts - t0)
        px, py = x0 + vx * gap, y0 + vy * gap
        slack = min(max(0.5 * last.h, 12.0), 80.0) + 0.3 * float(np.hypot(vx, vy)) * gap
        similar = 0.5 <= o.h / max(last.h, 1.0) <= 2.0
        return similar and bool(np.hypot(o.pt[0] - px, o.pt[1] - py) <= slack)

    def adopt(self, o: Obs, ts: float, stale: dict[int, Obs] | None = None) -> dict[str, Any] | None:
        """State of another track of the same object taken over by the new track ``o``: a track lost
        a moment ago (an orphan), or one the tracker still predicts but no longer matches (the
        detector gave the object a second track), when ``o`` appears where that one would be by now."""
        for i, (lost, last, st) in enumerate(self.orphans):
            if ts - lost <= self.occlusion_s and self._continues(o, last, st.get("_kin"), lost, ts):
                del self.orphans[i]
                st.pop("_kin", None)
                return self._hand_over(st, o)
        for tid, last in (stale or {}).items():
            if (
                tid != o.id
                and tid in self.state
                and self._continues(o, last, self.motion.kinematics(tid), ts, ts)
            ):
                self.fired.add(tid)  # the old track, should it match again, is the same object
                return self._hand_over(self.state.pop(tid), o)
        return None

    @staticmethod
    def _hand_over(st: dict[str, Any], o: Obs) -> dict[str, Any]:
        if st.get("incident") is not None:
            st["incident"].track_id = o.id
        return st

    def lose(self, alive: set[int], last_obs: dict[int, Obs], ts: float) -> list[Transition]:
        out: list[Transition] = []
        if len(self.fired) > len(alive):  # ids never come back: keep only those still tracked
            self.fired &= alive
        for tid in [t for t in self.state if t not in alive]:
            st = self.state.pop(tid)
            if tid in last_obs:
                st["_kin"] = self.motion.kinematics(tid)
                self.orphans.append((ts, last_obs[tid], st))
        keep = []
        for lost, last, st in self.orphans:
            if ts - lost <= self.occlusion_s:
                keep.append((lost, last, st))
            elif st.get("incident") is not None:
                inc = st["incident"]
                inc.end_ts = inc.last_ts
                inc.extra["end_reason"] = "lost"
                out.append(("end", inc))
        self.orphans = keep
        return out

    def close_all(self, ts: float) -> list[Transition]:
        out = []
        for st in [*self.state.values(), *(s for _, _, s in self.orphans)]:
            inc = st.get("incident")
            if inc is not None:
                inc.end_ts = ts
                inc.extra["end_reason"] = "stopped"
                out.append(("end", inc))
        self.state.clear()
        self.orphans.clear()
        return out

    def _speed(self, inc: Incident, tid: int) -> None:
        inc.speed_kmh, inc.speed_rel = (None if v is None else round(v, 2) for v in self.motion.speed(tid))
        inc.heading_deg = self.motion.heading_deg(tid)


class WrongWay(_TrackRule):
    """A confirmed track travelling against the expected direction for far enough, fast enough."""

    def __init__(
        self,
        cfg: WrongWayRule,
        zone: Any,
        motion: Motion,
        expected: np.ndarray,
        names: tuple[str, str] | None,
    ) -> None:
        super().__init__(cfg, zone, motion, occlusion_s=2.0)
        self.u = expected / np.linalg.norm(expected)
        self.names = names  # (expected direction name, the other) when the rule is on a line
        self.recent: list[Incident] = []
        proj = zone.poly.reshape(-1, 2) @ self.u
        self.extent_px = float(proj.max() - proj.min()) or 1.0

    def _same_as_recent(self, st: dict[str, Any], ts: float) -> bool:
        """Is this track's first sight in the zone where a vehicle of a recent event would have been?
        (A track broken for longer than the hand-over allows must not raise a second event.)"""
        entry = st.get("entry")
        if entry is None:
            return False
        t_entry, o_entry = entry
        for inc in self.recent:
            kin_obs = inc.extra.get("_kin")
            if kin_obs is None or inc.track_id == o_entry.id or t_entry - inc.last_ts > 4.0:
                continue
            kin, last = kin_obs
            if kin is not None and self._continues(o_entry, last, kin, inc.last_ts, t_entry):
                return True
        return False

    def _along(self, pt: tuple[float, float]) -> float:
        return float(np.dot(np.asarray(pt), self.u))

    def step(self, obs: list[Obs], ts: float) -> list[Transition]:
        cfg, out = self.cfg, []
        stale = {o.id: o for o in obs if not o.matched}
        for o in obs:
            if o.label not in cfg.classes or not o.matched:
                continue
            st = self.state.get(o.id)
            if st is None:
                if not self.inside(o):
                    continue
                st = self.adopt(o, ts, stale) or {"best": o.pt, "incident": None, "entry": (ts, o)}
                self.state[o.id] = st
            inc = st["incident"]
            if not self.inside(o):
                if inc is not None:
                    inc.end_ts = ts
                    inc.extra["end_reason"] = "left_zone"
                    out.append(("end", inc))
                    st["incident"] = None
                    st["done"] = True
                continue
            if inc is not None:
                inc.last_ts = ts
                inc.extra["_kin"] = (self.motion.kinematics(o.id), o)
                continue
            if st.get("done") or o.id in self.fired:
                continue
            self._progress(st, o)
            far, fast = self._against(st, o)
            if far and fast and self._same_as_recent(st, ts):
                self.fired.add(o.id)
                self.suppressed += 1
                continue
            if far and fast:
                out.append(("start", self._start(st, o, ts)))
        return out

    def _progress(self, st: dict[str, Any], o: Obs) -> None:
        """Follow the furthest point the track reached along the lane, and its steps back since."""
        prev = st.get("prev")
        st["prev"] = o.pt
        if self._along(o.pt) > self._along(st["best"]):
            st["best"] = o.pt  # furthest point reached along the lane's direction
            st["steps"] = st["against"] = 0
        elif prev is not None:
            # a wrong-way driver moves against the lane step after step; a track that hops back
            # onto the vehicle behind (an ID switch) jumps back once, then drives forward again
            st["steps"] = st.get("steps", 0) + 1
            st["against"] = st.get("against", 0) + (self._along(o.pt) < self._along(prev))

    def _against(self, st: dict[str, Any], o: Obs) -> tuple[bool, bool]:
        """(far, fast): has the track gone back against the lane far enough, steadily, and fast?"""
        cfg = self.cfg
        back = np.asarray(st["best"]) - np.asarray(o.pt)
        dist_px = float(np.dot(back, self.u))
        norm = float(np.hypot(*back))
        if norm <= 0 or dist_px / norm < np.cos(np.radians(cfg.max_angle_deg)):
            return False, False
        if self.motion.ground is not None:
            far = self.motion.ground.distance_m(st["best"], o.pt) >= cfg.min_distance_m
        else:
            far = dist_px / self.extent_px >= cfg.min_fraction
        kmh, rel = self.motion.speed(o.id)
        fast = (
            (kmh >= cfg.min_speed_kmh) if kmh is not None else (rel is not None and rel >= cfg.min_speed_rel)
        )
        steady = st.get("steps", 0) >= 5 and st.get("against", 0) >= cfg.min_steady * st["steps"]
        return far and steady, fast

    def _start(self, st: dict[str, Any], o: Obs, ts: float) -> Incident:
        cfg = self.cfg
        inc = Incident("wrong_way", cfg.name, cfg.zone, ts, o.id, o.label, last_ts=ts, last_update=ts)
        self.recent.append(inc)
        self.recent = [i for i in self.recent if ts - i.last_ts <= 10.0]
        inc.direction = self.names[1] if self.names else None
        self._speed(inc, o.id)
        st["incident"] = inc
        self.fired.add(o.id)
        return inc


class _Dwell(_TrackRule):
    """Shared by stopped-vehicle and pedestrian: a condition that must hold for min_duration_s."""

    kind: str  # the incident kind, and how long the condition must be false to end one (subclasses)
    clear_s: float

    def condition(self, o: Obs) -> bool | None:  # True holds, False breaks, None: no opinion yet
        raise NotImplementedError

    def step(self, obs: list[Obs], ts: float) -> list[Transition]:
        cfg, out = self.cfg, []
        stale = {o.id: o for o in obs if not o.matched}
        for o in obs:
            if o.label not in cfg.classes:
                continue
            st = self.state.get(o.id)
            if st is None:
                if not (o.matched and self.inside(o)):
                    continue
                st = self.adopt(o, ts, stale) or {
                    "since": None,
                    "bad_since": None,
                    "incident": None,
                    "last_in": ts,
                }
                self.state[o.id] = st
            if not o.matched:
                continue  # a predicted position says nothing; the clock runs on
            inc = st["incident"]
            ok = self.inside(o) and self.condition(o)
            if ok is None:
                continue
            if ok:
                st["bad_since"] = None
                st["last_in"] = ts
                if st["since"] is None:
                    st["since"] = ts
                if inc is not None:
                    inc.last_ts = ts
                elif ts - st["since"] >= cfg.min_duration_s and o.id not in self.fired:
                    inc = Incident(
                        self.kind, cfg.name, cfg.zone, st["since"], o.id, o.label, last_ts=ts, last_update=ts
                    )
                    self._speed(inc, o.id)
                    inc.extra["dwell_s"] = round(ts - st["since"], 1)
                    st["incident"] = inc
                    self.fired.add(o.id)
                    out.append(("start", inc))
                continue
            if st["bad_since"] is None:
                st["bad_since"] = ts
            if ts - st["bad_since"] >= self.clear_s:
                if inc is not None:
                    inc.end_ts = ts
                    inc.extra["end_reason"] = "moved" if self.inside(o) else "left_zone"
                    self._speed(inc, o.id)
                    out.append(("end", inc))
                    st["incident"] = None
                st["since"] = None
        return out


class StoppedVehicle(_Dwell):
    kind = "stopped_vehicle"

    def __init__(self, cfg: StoppedVehicleRule, zone: Any, motion: Motion) -> None:
        super().__init__(cfg, zone, motion, occlusion_s=cfg.occlusion_s)
        self.clear_s = cfg.clear_s

    def condition(self, o: Obs) -> bool | None:
        st = self.state[o.id]
        slow = self.motion.slow(o.id, self.cfg.max_speed_kmh, self.cfg.max_speed_rel)
        if slow is None:
            return None
        # one standing vehicle keeps its size; a "track" whose box keeps changing size is the tracker
        # hopping between vehicles passing one spot (the far end of a busy road), not a stop
        lo, hi = st.get("h_range") or (o.h, o.h)
        lo, hi = min(lo, o.h), max(hi, o.h)
        if st["since"] is None or hi > 1.5 * lo:
            lo = hi = o.h
            if st["since"] is not None:
                st["h_range"] = (lo, hi)
                return False
        st["h_range"] = (lo, hi)
        if slow:
            return True
        # between the limit and twice the limit: hysteresis, a standing vehicle's jitter never resets it
        if st["since"] is not None and self.motion.slow(
            o.id, self.cfg.max_speed_kmh, self.cfg.max_speed_rel, 2.0
        ):
            return True
        return False


class Pedestrian(_Dwell):
    kind = "pedestrian_on_carriageway"

    def __init__(self, cfg: PedestrianRule, zone: Any, motion: Motion) -> None:
        super().__init__(cfg, zone, motion, occlusion_s=cfg.occlusion_s)
        self.clear_s = cfg.occlusion_s

    def condition(self, o: Obs) -> bool | None:
        return True
