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

from agent.analytics.config import TrackerConfig

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)
_POS_W = 1.0 / 20
_VEL_W = 1.0 / 160


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas (N, M) of boxes ``a`` (N,4) and ``b`` (M,4), and each one's area."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter, area_a, area_b


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4 x1y1x2y2) with every box in ``b`` (M,4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter, area_a, area_b = _overlaps(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def ioa_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller of the two areas, (N, M): 1.0 when one box holds the other."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter, area_a, area_b = _overlaps(a, b)
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)


def suppress_nested(boxes: np.ndarray, scores: np.ndarray, max_ioa: float) -> list[int]:
    """Indices kept after dropping each box mostly inside (or mostly holding) a higher-scoring one.

    SSD-style detectors often return a second, nested box for one vehicle; left alone it becomes a
    second track and a double count.
    """
    order = list(np.argsort(-scores, kind="stable"))
    if max_ioa >= 1.0 or len(order) < 2:
        return order
    ioa = ioa_matrix(boxes, boxes)
    np.fill_diagonal(ioa, 0.0)
    if ioa.max() <= max_ioa:
        return [int(i) for i in order]
    dropped = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in order:
        if dropped[i]:
            continue
        keep.append(int(i))
        dropped |= ioa[i] > max_ioa
    return keep


def greedy_match(score: np.ndarray, min_score: float) -> list[tuple[int, int]]:
    """Pairs (row, col) taken best score first, each row and column at most once, score >= min_score."""
    if score.size == 0:
        return []
    rows, cols = np.nonzero(score >= min_score)
    if len(rows) == 0:
        return []
    order = np.argsort(-score[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    out = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        out.append((r, c))
    return out


def _xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            (b[..., 0] + b[..., 2]) / 2,
            (b[..., 1] + b[..., 3]) / 2,
            b[..., 2] - b[..., 0],
            b[..., 3] - b[..., 1],
        ],
        axis=-1,
    )


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
        self.votes[label] += score
        self._label = max(self.votes.items(), key=lambda kv: kv[1])[0]

    def anchor(self, kind: str) -> tuple[float, float]:
        cx, cy, _, h = self.mean[:4].tolist()
        return (cx, cy + h / 2) if kind == "bottom_center" else (cx, cy)


def _noise(mean_h: np.ndarray, w_pos: float, w_vel: float, dim: int) -> np.ndarray:
    """Per-track diagonal std devs scaled by box height (ByteTrack's heuristic)."""
    h = np.maximum(mean_h, 1.0)
    std = [w_pos * h, w_pos * h, w_pos * h, w_pos * h]
    if dim == 8:
        std += [w_vel * h, w_vel * h, w_vel * h, w_vel * h]
    return np.stack(std, axis=-1) ** 2


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
        M = np.stack([t.mean for t in self.tracks])
        P = np.stack([t.cov for t in self.tracks])
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
        M = np.stack([t.mean for t in tracks])
        P = np.stack([t.cov for t in tracks])
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
        mean[:4] = _xyxy_to_cxcywh(box)
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
        if self._last_ts is not None and ts > self._last_ts:
            dt = ts - self._last_ts
            self._fps_dt = 0.8 * self._fps_dt + 0.2 * dt if self.tracks else dt
        dt_frames = 1.0 if self._last_ts is None else max((ts - self._last_ts) / max(self._fps_dt, 1e-3), 1.0)
        dt_frames = min(dt_frames, 10.0)
        self._last_ts = ts
        self._predict(dt_frames)
        out: list[Track | None] = [None] * n
        det_track: dict[int, Track] = {}

        det_c = _xyxy_to_cxcywh(boxes)
        kept = suppress_nested(boxes, scores, cfg.max_overlap) if n else []
        high = [i for i in kept if scores[i] >= cfg.high_threshold]
        low = [i for i in kept if cfg.low_threshold <= scores[i] < cfg.high_threshold]
        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        for t in self.tracks:
            t.matched = False

        def associate(
            tracks: list[Track], dets: list[int], min_iou: float, fallback: bool
        ) -> tuple[list[Track], list[int]]:
            if not tracks or not dets:
                return tracks, dets
            m = np.stack([t.mean[:4] for t in tracks])
            tb = np.concatenate([m[:, :2] - m[:, 2:] / 2, m[:, :2] + m[:, 2:] / 2], axis=1)
            db = boxes[dets]
            sim = iou_matrix(tb, db)
            if not cfg.class_agnostic:
                lab = (
                    np.array([t.label for t in tracks])[:, None]
                    == np.array([labels[d] for d in dets])[None, :]
                )
                sim = np.where(lab, sim, 0.0)
            pairs = greedy_match(sim, max(min_iou, 1e-6))
            if fallback and cfg.max_center_dist > 0:
                mr = {r for r, _ in pairs}
                mc = {c for _, c in pairs}
                rr = [r for r in range(len(tracks)) if r not in mr]
                cc = [c for c in range(len(dets)) if c not in mc]
                if rr and cc:
                    tc = _xyxy_to_cxcywh(tb[rr])
                    dc = _xyxy_to_cxcywh(db[cc])
                    diag = np.hypot(tc[:, 2], tc[:, 3])[:, None]
                    dist = np.hypot(
                        tc[:, None, 0] - dc[None, :, 0], tc[:, None, 1] - dc[None, :, 1]
                    ) / np.maximum(diag, 1.0)
                    ratio = np.minimum(tc[:, None, 3], dc[None, :, 3]) / np.maximum(
                        tc[:, None, 3], dc[None, :, 3]
                    )
                    ok = (dist <= cfg.max_center_dist) & (ratio > 0.5)
                    if not cfg.class_agnostic:
                        ok &= (
                            np.array([tracks[r].label for r in rr])[:, None]
                            == np.array([labels[dets[c]] for c in cc])[None, :]
                        )
                    sc = np.where(ok, 1.0 / (1.0 + dist), 0.0)
                    pairs += [(rr[a], cc[b]) for a, b in greedy_match(sc, 1e-6)]
            mr = set()
            mc = set()
            upd_t, upd_z = [], []
            for r, c in pairs:
                t, d = tracks[r], dets[c]
                mr.add(r)
                mc.add(c)
                upd_t.append(t)
                upd_z.append(det_c[d])
                det_track[d] = t
            self._update(upd_t, np.array(upd_z).reshape(-1, 4))
            for t in upd_t:
                t.matched = True
            return [t for i, t in enumerate(tracks) if i not in mr], [
                d for j, d in enumerate(dets) if j not in mc
            ]

        rest_t, rest_high = associate(confirmed, high, cfg.match_iou, True)
        recent = [t for t in rest_t if t.last_frame == frame - 1 or ts - t.last_ts <= 1.5 * self._fps_dt]
        rest_recent, _ = associate(recent, low, cfg.low_match_iou, False)
        _, rest_high = associate(tentative, rest_high, max(cfg.match_iou, 0.3), True)

        newly: list[int] = []
        for d, t in det_track.items():
            t.vote(labels[d], float(scores[d]))
            t.last_score = float(scores[d])
            t.last_ts = ts
            t.last_frame = frame
            t.hits += 1
            t.frames += 1
            if not t.confirmed and t.hits >= cfg.min_hits:
                t.confirmed = True
                newly.append(d)
        if newly and cfg.relink_dist > 0:
            self._relink(newly, det_track, ts)
        taken = np.array([t.box for t in det_track.values()]).reshape(-1, 4)
        for d in rest_high:
            if len(taken) and ioa_matrix(boxes[d : d + 1], taken).max() > cfg.max_overlap:
                continue  # a duplicate of an object already tracked, not a new one
            if scores[d] >= cfg.new_track_threshold:
                t = self._new_track(boxes[d], labels[d], float(scores[d]), ts, frame)
                t.matched = True
                self.tracks.append(t)
                det_track[d] = t
        self.closed = []
        keep = []
        for t in self.tracks:
            if t.matched:
                keep.append(t)
            elif not t.confirmed:
                if ts - t.last_ts <= 2.5 * self._fps_dt:  # a tentative track may miss one frame
                    keep.append(t)
                # else dropped: never confirmed, never counted or persisted
            elif ts - t.last_ts > cfg.lost_timeout_s:
                self.closed.append(t)
            else:
                keep.append(t)
        self.tracks = keep
        for d, t in det_track.items():
            out[d] = t if t.confirmed else None
        return out

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
