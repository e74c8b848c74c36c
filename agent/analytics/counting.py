"""Counting lines: each track counts at most once per direction, with hysteresis.

A line is a segment ``p1 -> p2``. The signed distance of a track's anchor point to it is positive
on the right-hand side of ``p1 -> p2`` as seen on screen (for a line drawn left to right, below
it): crossing from negative to positive is the line's first direction, the other way its second.

Rules (the reasons are the jitter complaints users have about line counters):

* A track only *takes a side* once its anchor is farther from the line than the hysteresis band
  (``max(hysteresis_px, hysteresis_rel * box height)``). Box jitter inside the band changes
  nothing.
* A crossing is counted when the side a track has taken flips, and only where the track passed
  through the segment itself (not its extension).
* Each track counts at most once per direction per line. After a count, going back needs the
  anchor to move half a box height past the line (not just the band), so a track oscillating on
  the line counts once; a real U-turn that drives back counts once each way.
* A track first seen on the far side (or inside the band) has no side to cross from, so it is not
  counted until it has been seen on one side and then the other.
* The crossing time and point are interpolated between the two observations around the line, so
  speeds between two lines are not quantized to the frame interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.analytics.boxes import ioa_matrix
from agent.analytics.config import LineConfig
from agent.analytics.geometry import to_pixels


@dataclass(slots=True)
class Crossing:
    """One counted crossing."""

    line: str
    direction: str
    label: str
    track_id: int
    ts: float
    frame: int
    point: tuple[float, float]  # interpolated crossing point on the line, pixels
    predicted: bool = False  # decided on the motion model's positions across a gap in detections


@dataclass(slots=True)
class _TrackLineState:
    side: int = 0  # -1, +1, or 0 before a side is taken
    counted: set[int] = field(default_factory=set)  # +1 / -1 directions already counted
    last_s: float | None = None
    last_ts: float = 0.0
    last_pt: tuple[float, float] = (0.0, 0.0)
    zero_ts: float | None = None
    zero_pt: tuple[float, float] | None = None
    pending: Crossing | None = None  # a crossing seen on predicted positions, not yet confirmed
    pending_from: int = 0  # the side it came from


class LineCounter:
    """One counting line of one camera."""

    def __init__(self, cfg: LineConfig, frame_size: tuple[int, int] | None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        pts = to_pixels(cfg.points, cfg.units, frame_size, f"line {cfg.name}")
        self.p1 = pts[0]
        self.d = pts[1] - pts[0]
        self.length = float(np.hypot(*self.d))
        if self.length < 1e-6:
            raise ValueError(f"line {cfg.name}: its two points are the same")
        self.classes = set(cfg.classes)
        self._p = (float(self.p1[0]), float(self.p1[1]), float(self.d[0]), float(self.d[1]))
        self._state: dict[int, _TrackLineState] = {}

    def signed_distance(self, pt: tuple[float, float]) -> float:
        x1, y1, dx, dy = self._p
        return (dx * (pt[1] - y1) - dy * (pt[0] - x1)) / self.length

    def _normal_speed(self, v: tuple[float, float]) -> float:
        """Component of a velocity toward the line's right-hand side (positive: first direction)."""
        _, _, dx, dy = self._p
        return (dx * v[1] - dy * v[0]) / self.length

    def _along(self, pt: tuple[float, float]) -> float:
        x1, y1, dx, dy = self._p
        return ((pt[0] - x1) * dx + (pt[1] - y1) * dy) / (self.length**2)

    def observe(
        self,
        track_id: int,
        pt: tuple[float, float],
        box_h: float,
        ts: float,
        frame: int,
        label: str,
        confirmed: bool = True,
        predicted: bool = False,
        velocity: tuple[float, float] | None = None,
    ) -> Crossing | None:
        """Feed one anchor point of a track; return the crossing it completes, if any.

        ``predicted``: the point is the motion model's position of a track the detector missed in
        this frame. A crossing decided on such points is held back: it is counted when the track is
        next seen beyond the band on the new side, and dropped when it is seen back on the side it
        came from or ends unseen (a track whose detections stop near a line is more often a
        duplicate box than an object that went on: measured on the clips, counting those
        over-counts).

        ``velocity``: the object's own motion (its box centre, pixels per frame). When given, a
        crossing only counts if the object moves that way: a box that grows or shrinks at a line
        (occlusion, taking in a neighbour) moves its bottom edge without the object crossing.
        """
        st = self._state.get(track_id)
        if st is None:
            if predicted:
                return None
            st = self._state[track_id] = _TrackLineState()
        x1, y1, dx, dy = self._p
        s = (dx * (pt[1] - y1) - dy * (pt[0] - x1)) / self.length  # signed_distance(pt), inlined: hot
        band = self.cfg.hysteresis_rel * box_h
        if band < self.cfg.hysteresis_px:
            band = self.cfg.hysteresis_px
        if st.pending is not None and not predicted and abs(s) > band:
            held = self._settle(st, s, ts, pt)
            if held is not None:
                return held
        if st.last_s is not None and (st.last_s < 0) != (s < 0) and s != st.last_s:
            self._mark_zero(st, st.last_s, s, ts, pt)
        st.last_s, st.last_ts, st.last_pt = s, ts, pt
        side = 1 if s > 0 else -1
        if st.counted and side != st.side and band < 0.5 * box_h:
            band = 0.5 * box_h  # going back after a count must be a real move, not jitter
        if abs(s) <= band:
            return None
        prev = st.side
        st.side = side
        if prev == 0 or prev == side or st.zero_pt is None or st.zero_ts is None:  # (set together)
            return None
        zpt, zts = st.zero_pt, st.zero_ts
        st.zero_pt = st.zero_ts = None
        if side in st.counted or not confirmed or label not in self.classes:
            return None
        if velocity is not None and self._normal_speed(velocity) * side <= 0:
            return None  # the anchor crossed, the object did not move that way
        if not (0.0 <= self._along(zpt) <= 1.0):
            return None
        return self._count(st, side, prev, zpt, zts, track_id, frame, label, predicted)

    @staticmethod
    def _settle(st: _TrackLineState, s: float, ts: float, pt: tuple[float, float]) -> Crossing | None:
        """A track with a held-back (predicted) crossing is seen again beyond the band: the crossing
        it completes when on the new side; else ``None``, the crossing undone."""
        side_now = 1 if s > 0 else -1
        c = st.pending
        st.pending = None
        if side_now != st.pending_from:
            st.last_s, st.last_ts, st.last_pt, st.side = s, ts, pt, side_now
            return c
        # seen back where it came from: the predicted crossing did not happen
        st.counted.discard(-st.pending_from)
        st.side = st.pending_from
        return None

    @staticmethod
    def _mark_zero(st: _TrackLineState, last_s: float, s: float, ts: float, pt: tuple[float, float]) -> None:
        """The anchor changed sides since the last point: interpolate where and when it was on the line."""
        f = last_s / (last_s - s)
        st.zero_ts = st.last_ts + f * (ts - st.last_ts)
        st.zero_pt = (
            st.last_pt[0] + f * (pt[0] - st.last_pt[0]),
            st.last_pt[1] + f * (pt[1] - st.last_pt[1]),
        )

    def _count(
        self,
        st: _TrackLineState,
        side: int,
        prev: int,
        zpt: tuple[float, float],
        zts: float,
        track_id: int,
        frame: int,
        label: str,
        predicted: bool,
    ) -> Crossing | None:
        """Count the crossing toward ``side`` (held back when decided on predicted points)."""
        st.counted.add(side)
        direction = self.cfg.directions[0] if side > 0 else self.cfg.directions[1]
        c = Crossing(
            self.name,
            direction,
            label,
            track_id,
            float(zts),
            frame,
            (float(zpt[0]), float(zpt[1])),
            predicted,
        )
        if predicted:
            st.pending, st.pending_from = c, prev
            return None
        return c

    def entered_view(
        self,
        track_id: int,
        origin: tuple[float, float],
        first: tuple[float, float],
        box_h: float,
        when: tuple[float, int],
        label: str,
        velocity: tuple[float, float],
    ) -> Crossing | None:
        """A confirmed track, first seen near the frame's edge and moving away from it, came
        into view from beyond that edge (``origin``: where its anchor was before it came in): the
        line between ``origin`` and ``first`` (its first anchor) was crossed before the detector
        found it. Counted once in the direction of its motion; ``None`` when the line is not
        between the two, ``first`` is inside the band, or the track has counted already."""
        st = self._state.get(track_id)
        if st is None or st.counted or label not in self.classes:
            return None
        s0, s1 = self.signed_distance(origin), self.signed_distance(first)
        band = max(self.cfg.hysteresis_px, self.cfg.hysteresis_rel * box_h)
        side = 1 if s1 > 0 else -1
        if (s0 > 0) == (s1 > 0) or abs(s1) <= band or st.side != side:
            return None
        if self._normal_speed(velocity) * side <= 0:
            return None
        f = s0 / (s0 - s1)
        zpt = (origin[0] + f * (first[0] - origin[0]), origin[1] + f * (first[1] - origin[1]))
        if not (0.0 <= self._along(zpt) <= 1.0):
            return None
        st.zero_pt = st.zero_ts = None
        return self._count(st, side, -side, zpt, when[0], track_id, when[1], label, False)

    def left_view(self, track_id: int) -> Crossing | None:
        """The track's predicted box has left the frame: a crossing held back on its predicted
        positions is counted (the object went on out of view; the detector loses vehicles at the
        frame's edge, so a line near it is otherwise crossed by predictions alone)."""
        st = self._state.get(track_id)
        if st is None or st.pending is None:
            return None
        c, st.pending = st.pending, None
        return c

    def forget(self, track_id: int) -> None:
        self._state.pop(track_id, None)

    def keep_only(self, track_ids: set[int]) -> None:
        """Drop the state of every track not in ``track_ids`` (tracks that left without a close)."""
        for tid in [t for t in self._state if t not in track_ids]:
            del self._state[tid]


class SameObject:
    """One object, one count, across a camera's lines.

    SSD-class detectors often see one large vehicle as two boxes at once (a lorry's cab and its
    load, a car and its trailer), each of which the tracker may follow. A crossing made while the
    track's box lies mostly inside (intersection over the smaller box >= ``min_overlap``) the box of
    a live track that made the same crossing (line and direction) at most ``window_s`` before is
    that same object again: it is not counted (the line still marks it as crossed, so it does not
    count later either). Measured on the motorway clip (docs/validation.md): 0.7 removes doubled
    lorries and keeps vehicles side by side; 0.5 already merges cars that overlap in perspective.
    """

    def __init__(self, window_s: float = 0.6, min_overlap: float = 0.7) -> None:
        self.window_s, self.min_overlap = window_s, min_overlap
        self._recent: dict[tuple[str, str], list[tuple[float, int]]] = {}

    def duplicate(self, c: Crossing, boxes: dict[int, np.ndarray]) -> bool:
        """Whether crossing ``c`` repeats a recent one of another track (``boxes``: the current box
        x1, y1, x2, y2 of every live track, by id); if not, it is remembered for the next ones."""
        key = (c.line, c.direction)
        recent = [(ts, tid) for ts, tid in self._recent.get(key, ()) if c.ts - ts <= self.window_s]
        mine = boxes.get(c.track_id)
        others = [tid for _, tid in recent if tid != c.track_id and tid in boxes]
        dup = False
        if mine is not None and others:
            ov = ioa_matrix(mine[None, :], np.array([boxes[t] for t in others]))
            dup = bool(ov.max() >= self.min_overlap)
        if not dup:
            recent.append((c.ts, c.track_id))
        self._recent[key] = recent
        return dup
