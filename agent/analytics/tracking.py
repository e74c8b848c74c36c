"""ByteTrack-style multi-object tracker in numpy: Kalman motion model, two association passes.

Each frame: every track's box is predicted by a constant-velocity Kalman filter on
``(cx, cy, w, h)`` (noise scaled by the box size, as in ByteTrack); high-score detections are
matched to confirmed and lost tracks by IoU; low-score detections then extend the tracks still
unmatched (ByteTrack's second pass, which keeps tracks alive through partial occlusion when the
detector's confidence drops); new (unconfirmed) tracks take what is left. A centre-distance
fallback catches fast objects whose predicted box no longer overlaps (low frame rates). Unmatched
high-score detections start tracks; a track unseen for ``lost_timeout_s`` is closed.

Matching is greedy on the best overlap first. For IoU-gated tracking this gives the same pairs as
the Hungarian algorithm in all but contrived cases, costs a sort instead of O(n^3), and needs no
scipy (about 35 MB on a Pi). The class of a track is the score-weighted majority of its labels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from agent.analytics.boxes import greedy_match, ioa_matrix, iou_matrix, suppress_nested, xyxy_to_cxcywh
from agent.analytics.config import TrackerConfig

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)
_POS_W = 1.0 / 20
_VEL_W = 1.0 / 160

__all__ = ["Track", "Tracker", "greedy_match", "ioa_matrix", "iou_matrix", "suppress_nested"]


@dataclass(eq=False)
class Track:
    """One tracked object. ``mean``/``cov`` are its Kalman state over (cx, cy, w, h, and velocities)."""

    id: int
    mean: np.ndarray
    cov: np.ndarray
    first_ts: float
    last_ts: float
    first_frame: int
    last_frame: int
    hits: int = 1
    frames: int = 1
    confirmed: bool = False
    votes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    last_score: float = 0.0
    matched: bool = True  # matched in the latest frame
    relinks: int = 0  # fragments joined back into this track
    _label: str = "unknown"  # the votes' winner, kept up to date by vote()

    @property
    def box(self) -> tuple[float, float, float, float]:
        cx, cy, w, h = self.mean[:4].tolist()
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    @property
    def label(self) -> str:
        return self._label

    def vote(self, label: str, score: float) -> None:
        """Add a detection's score to its label's votes (the track's class is the highest total)."""
        votes = self.votes
        votes[label] += score
        if label != self._label and votes[label] >= votes.get(self._label, -1.0):
            # the winner only changes when another label's total reaches it (max keeps the first
            # of equal totals, so a tie is settled as it was: by the order labels were first seen)
            self._label = max(votes.items(), key=lambda kv: kv[1])[0]

    def anchor(self, kind: str) -> tuple[float, float]:
        cx, cy, _, h = self.mean[:4].tolist()
        return (cx, cy + h / 2) if kind == "bottom_center" else (cx, cy)


def _noise(mean_h: np.ndarray, w_pos: float, w_vel: float, dim: int) -> np.ndarray:
    """Per-track diagonal variances (N, dim) from std devs scaled by box height (ByteTrack's heuristic)."""
    weights = np.array([w_pos] * 4 + [w_vel] * (dim - 4))
    return (np.maximum(mean_h, 1.0)[:, None] * weights[None, :]) ** 2


@dataclass(slots=True)
class _FrameDets:
    """One frame's detections as the association steps share them."""

    boxes: np.ndarray  # (N, 4) x1y1x2y2
    labels: list[str]
    centers: np.ndarray  # (N, 4) cx, cy, w, h
    det_track: dict[int, Track]  # detection index -> its track, filled as the passes match


class Tracker:
    """Tracks one camera's detections. Call :meth:`update` once per inferred frame, in time order."""

    def __init__(self, cfg: TrackerConfig, *, first_id: int = 1) -> None:
        self.cfg = (
            cfg.resolved()
        )  # unset score settings: the safe defaults (the runner passes a resolved one)
        self.tracks: list[Track] = []
        self.next_id = first_id
        self.closed: list[Track] = []  # tracks closed by the latest update (read and cleared by the caller)
        self._last_ts: float | None = None
        self._fps_dt = 0.1
        self.relinks = 0  # fragments joined back (all tracks), for the figures

    # -- Kalman, batched over tracks -----------------------------------------------------------
    def _predict(self, dt_frames: float) -> None:
        if not self.tracks:
            return
        M = np.array([t.mean for t in self.tracks])
        P = np.array([t.cov for t in self.tracks])
        unseen = np.fromiter((not t.matched for t in self.tracks), bool, len(self.tracks))
        M[unseen, 6:8] = 0.0  # a missed object keeps its size (ByteTrack): only its position coasts
        F = _F.copy()
        F[:4, 4:] *= dt_frames
        Q = _noise(M[:, 3], _POS_W, _VEL_W, 8) * max(dt_frames, 1.0)
        M = M @ F.T
        P = F @ P @ F.T
        P[:, range(8), range(8)] += Q
        M[:, 2:4] = np.maximum(M[:, 2:4], 2.0)
        for t, m, p in zip(self.tracks, M, P):
            t.mean, t.cov = m, p

    @staticmethod
    def _update(tracks: list[Track], z: np.ndarray) -> None:
        if not tracks:
            return
        M = np.array([t.mean for t in tracks])
        P = np.array([t.cov for t in tracks])
        R = _noise(M[:, 3], _POS_W, _VEL_W, 4)
        S = P[:, :4, :4].copy()
        S[:, range(4), range(4)] += R
        PHt = P[:, :, :4]
        K = np.linalg.solve(S, PHt.transpose(0, 2, 1)).transpose(0, 2, 1)  # (N,8,4)
        innov = z - M[:, :4]
        M = M + np.einsum("nij,nj->ni", K, innov)
        P = P - K @ P[:, :4, :]
        for t, m, p in zip(tracks, M, P):
            t.mean, t.cov = m, p

    def _new_track(self, box: np.ndarray, label: str, score: float, ts: float, frame: int) -> Track:
        mean = np.zeros(8)
        mean[:4] = xyxy_to_cxcywh(box)
        h = max(mean[3], 1.0)
        std = np.array([2 * _POS_W * h] * 4 + [10 * _VEL_W * h] * 4)
        t = Track(self.next_id, mean, np.diag(std**2), ts, ts, frame, frame)
        t.vote(label, score)
        t.last_score = score
        t.confirmed = self.cfg.min_hits <= 1
        self.next_id += 1
        return t

    # -- one frame -----------------------------------------------------------------------------
    def update(
        self, boxes: np.ndarray, scores: np.ndarray, labels: list[str], ts: float, frame: int
    ) -> list[Track | None]:
        """Associate this frame's detections (boxes N,4 x1y1x2y2) and return each one's track
        (``None`` for a detection that matched no confirmed track)."""
        cfg = self.cfg
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        scores = np.asarray(scores, dtype=float).reshape(-1)
        n = len(boxes)
        self._advance_clock(ts)
        det_track: dict[int, Track] = {}
        frame_dets = _FrameDets(boxes, labels, xyxy_to_cxcywh(boxes), det_track)
        assert cfg.max_overlap is not None  # resolved(): every score setting is set
        kept = suppress_nested(boxes, scores, cfg.max_overlap) if n else []
        high = [i for i in kept if scores[i] >= cfg.high_threshold]
        low = [i for i in kept if cfg.low_threshold <= scores[i] < cfg.high_threshold]
        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        for t in self.tracks:
            t.matched = False
        rest_t, rest_high = self._associate(frame_dets, confirmed, high, cfg.match_iou, True)
        recent = [t for t in rest_t if t.last_frame == frame - 1 or ts - t.last_ts <= 1.5 * self._fps_dt]
        self._associate(frame_dets, recent, low, cfg.low_match_iou, False)
        _, rest_high = self._associate(frame_dets, tentative, rest_high, max(cfg.match_iou, 0.3), True)
        newly = self._commit(det_track, labels, scores, ts, frame)
        if newly and cfg.relink_dist > 0:
            self._relink(newly, det_track, ts)
        self._start_tracks(rest_high, frame_dets, scores, ts, frame)
        self._retire(ts)
        out: list[Track | None] = [None] * n
        for d, t in det_track.items():
            out[d] = t if t.confirmed else None
        return out

    def _advance_clock(self, ts: float) -> None:
        """Follow the frame interval and predict every track to ``ts``."""
        if self._last_ts is not None and ts > self._last_ts:
            dt = ts - self._last_ts
            self._fps_dt = 0.8 * self._fps_dt + 0.2 * dt if self.tracks else dt
        dt_frames = 1.0 if self._last_ts is None else max((ts - self._last_ts) / max(self._fps_dt, 1e-3), 1.0)
        dt_frames = min(dt_frames, 10.0)
        self._last_ts = ts
        self._predict(dt_frames)

    def _associate(
        self, fd: _FrameDets, tracks: list[Track], dets: list[int], min_iou: float, fallback: bool
    ) -> tuple[list[Track], list[int]]:
        """Match ``tracks`` to the detections ``dets`` by IoU (and, with ``fallback``, by centre
        distance); update the matched tracks' Kalman state. Returns the unmatched of both."""
        if not tracks or not dets:
            return tracks, dets
        cfg = self.cfg
        m = np.array([t.mean[:4] for t in tracks])
        tb = np.concatenate([m[:, :2] - m[:, 2:] / 2, m[:, :2] + m[:, 2:] / 2], axis=1)
        db = fd.boxes[dets]
        sim = iou_matrix(tb, db)
        if not cfg.class_agnostic:
            lab = (
                np.array([t.label for t in tracks])[:, None]
                == np.array([fd.labels[d] for d in dets])[None, :]
            )
            sim = np.where(lab, sim, 0.0)
        pairs = greedy_match(sim, max(min_iou, 1e-6))
        if fallback and cfg.max_center_dist > 0:
            pairs += self._center_pairs(fd, tracks, dets, tb, db, pairs)
        mr = set()
        mc = set()
        upd_t, upd_z = [], []
        for r, c in pairs:
            t, d = tracks[r], dets[c]
            mr.add(r)
            mc.add(c)
            upd_t.append(t)
            upd_z.append(fd.centers[d])
            fd.det_track[d] = t
        self._update(upd_t, np.array(upd_z).reshape(-1, 4))
        for t in upd_t:
            t.matched = True
        return [t for i, t in enumerate(tracks) if i not in mr], [
            d for j, d in enumerate(dets) if j not in mc
        ]

    def _center_pairs(
        self,
        fd: _FrameDets,
        tracks: list[Track],
        dets: list[int],
        tb: np.ndarray,
        db: np.ndarray,
        pairs: list[tuple[int, int]],
    ) -> list[tuple[int, int]]:
        """Pairs of the tracks and detections ``pairs`` left unmatched whose centres are close
        (fast objects whose predicted box no longer overlaps)."""
        cfg = self.cfg
        mr = {r for r, _ in pairs}
        mc = {c for _, c in pairs}
        rr = [r for r in range(len(tracks)) if r not in mr]
        cc = [c for c in range(len(dets)) if c not in mc]
        if not (rr and cc):
            return []
        tc = xyxy_to_cxcywh(tb[rr])
        dc = xyxy_to_cxcywh(db[cc])
        diag = np.hypot(tc[:, 2], tc[:, 3])[:, None]
        dist = np.hypot(tc[:, None, 0] - dc[None, :, 0], tc[:, None, 1] - dc[None, :, 1]) / np.maximum(
            diag, 1.0
        )
        ratio = np.minimum(tc[:, None, 3], dc[None, :, 3]) / np.maximum(tc[:, None, 3], dc[None, :, 3])
        ok = (dist <= cfg.max_center_dist) & (ratio > 0.5)
        if not cfg.class_agnostic:
            ok &= (
                np.array([tracks[r].label for r in rr])[:, None]
                == np.array([fd.labels[dets[c]] for c in cc])[None, :]
            )
        sc = np.where(ok, 1.0 / (1.0 + dist), 0.0)
        return [(rr[a], cc[b]) for a, b in greedy_match(sc, 1e-6)]

    def _commit(
        self, det_track: dict[int, Track], labels: list[str], scores: np.ndarray, ts: float, frame: int
    ) -> list[int]:
        """Record each matched detection on its track; returns the detections whose track was
        confirmed just now."""
        min_hits = self.cfg.min_hits
        newly: list[int] = []
        for d, t in det_track.items():
            t.vote(labels[d], float(scores[d]))
            t.last_score = float(scores[d])
            t.last_ts = ts
            t.last_frame = frame
            t.hits += 1
            t.frames += 1
            if not t.confirmed and t.hits >= min_hits:
                t.confirmed = True
                newly.append(d)
        return newly

    def _start_tracks(
        self, rest_high: list[int], fd: _FrameDets, scores: np.ndarray, ts: float, frame: int
    ) -> None:
        """New tracks for the high-score detections left, unless they duplicate a tracked object."""
        cfg = self.cfg
        boxes, det_track = fd.boxes, fd.det_track
        if not rest_high:
            return
        m = np.array([t.mean[:4] for t in det_track.values()]).reshape(-1, 4)
        taken = np.concatenate([m[:, :2] - m[:, 2:] / 2, m[:, :2] + m[:, 2:] / 2], axis=1)
        for d in rest_high:
            if len(taken) and ioa_matrix(boxes[d : d + 1], taken).max() > cfg.max_overlap:
                continue  # a duplicate of an object already tracked, not a new one
            if scores[d] >= cfg.new_track_threshold:
                t = self._new_track(boxes[d], fd.labels[d], float(scores[d]), ts, frame)
                t.matched = True
                self.tracks.append(t)
                det_track[d] = t

    def _retire(self, ts: float) -> None:
        """Drop tentative tracks missed too long and close confirmed ones lost too long."""
        self.closed = []
        keep = []
        lost_timeout_s = self.cfg.lost_timeout_s
        for t in self.tracks:
            if t.matched:
                keep.append(t)
            elif not t.confirmed:
                if ts - t.last_ts <= 2.5 * self._fps_dt:  # a tentative track may miss one frame
                    keep.append(t)
                # else dropped: never confirmed, never counted or persisted
            elif ts - t.last_ts > lost_timeout_s:
                self.closed.append(t)
            else:
                keep.append(t)
        self.tracks = keep

    def _relink(self, newly: list[int], det_track: dict[int, Track], ts: float) -> None:
        """A track confirmed just now near where a lost track is predicted to be is that object
        again (a fragment): the lost track takes over its state and keeps its id, so the object
        neither counts twice nor loses a crossing it was making."""
        lost = [
            t
            for t in self.tracks
            if t.confirmed and not t.matched and ts - t.last_ts <= self.cfg.lost_timeout_s
        ]
        if not lost:
            return
        for d in newly:
            if not lost:
                break
            n = det_track[d]
            o_m = np.array([o.mean[:4] for o in lost])
            ncx, ncy, _, nh = n.mean[:4].tolist()
            dist = np.hypot(ncx - o_m[:, 0], ncy - o_m[:, 1]) / np.maximum(
                np.hypot(o_m[:, 2], o_m[:, 3]), 1.0
            )
            ratio = np.minimum(o_m[:, 3], nh) / np.maximum(np.maximum(o_m[:, 3], nh), 1e-6)
            ok = (dist <= self.cfg.relink_dist) & (ratio > 0.6)
            if not ok.any():
                continue
            cand = np.where(ok, dist, np.inf)[::-1]  # the nearest; on a tie the last (as a <= scan)
            best = lost[len(lost) - 1 - int(np.argmin(cand))]
            lost.remove(best)
            best.mean, best.cov = n.mean.copy(), n.cov.copy()
            for k, v in n.votes.items():
                best.vote(k, v)
            best.last_score, best.last_ts, best.last_frame = n.last_score, n.last_ts, n.last_frame
            best.hits += n.hits
            best.frames += n.frames
            best.matched = True
            best.relinks += 1
            self.relinks += 1
            det_track[d] = best
            self.tracks.remove(n)

    def close_all(self) -> list[Track]:
        """Close every open confirmed track (at shutdown)."""
        closed = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return closed
