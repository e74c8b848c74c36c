"""``edge-agent validate``: run the agent's own pipeline over a recorded clip and compare what it
counted with hand-counted ground truth, per line, direction and class.

The run is the real one (:func:`agent.runner.run_agent` with the camera's config), with only what
a validation needs changed: the file is read once (no loop, not paced), into a scratch database,
without the API, the broker or sensors, and stamped with a media clock (``start_time``) so every
crossing has a frame number. Counted crossings are then matched one to one with the truth (nearest
in time, then position), which gives matched, missed and extra crossings with their frames, and
accuracies in the way Telraam reports its validations (counted / true, in total and per class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from agent.analytics.identity import identity
from agent.analytics.truth import Truth, TruthEvent

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # media clock of a validation run without start_time


@dataclass
class Counted:
    frame: float
    x: float | None
    y: float | None
    label: str
    track: int | None = None  # the track that counted it


@dataclass
class DirectionReport:
    line: str
    direction: str
    truth: int  # required crossings
    optional: int
    counted: int
    matched: int
    matched_optional: int
    missed: list[TruthEvent] = field(default_factory=list)
    extra: list[Counted] = field(default_factory=list)
    matches: list[tuple[TruthEvent, Counted]] = field(default_factory=list)
    optional_events: list[TruthEvent] = field(default_factory=list)
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def counted_effective(self) -> int:
        """Counted crossings less those that matched an optional truth (both answers are right)."""
        return self.counted - self.matched_optional

    @property
    def error(self) -> float | None:
        """(counted - truth) / truth; 0 when both are 0; None for truth 0 with counts."""
        if self.truth == 0:
            return 0.0 if self.counted_effective == 0 else None
        return (self.counted_effective - self.truth) / self.truth

    def as_dict(self) -> dict[str, Any]:
        err = self.error
        return {
            "line": self.line,
            "direction": self.direction,
            "truth": self.truth,
            "optional": self.optional,
            "counted": self.counted,
            "matched": self.matched,
            "missed": len(self.missed),
            "extra": len(self.extra),
            "missed_frames": [round(e.frame) for e in self.missed],
            "extra_frames": [round(c.frame) for c in self.extra],
            "error": None if err is None else round(err, 4),
            "accuracy": None if err is None else round(1 - abs(err), 4),
            "per_class": self.per_class,
        }


def _class_of(label: str, groups: dict[str, list[str]]) -> str:
    for name, members in groups.items():
        if label == name or label in members:
            return name
    return label


def match_direction(
    line: str,
    direction: str,
    truth: list[TruthEvent],
    counted: list[Counted],
    *,
    tol_frames: float,
    tol_px: float,
    groups: dict[str, list[str]] | None = None,
) -> DirectionReport:
    """One-to-one matching of counted crossings to the truth of one line and direction.

    A pair is possible when the counted frame is within ``tol_frames`` of the truth's frame (or of
    its ``frame..until`` span) and, where the truth has a position, within ``tol_px`` of it. Pairs
    are taken cheapest first (time off in tolerances plus distance in tolerances), required truth
    before optional.
    """
    groups = groups or {}
    pairs = _candidate_pairs(truth, counted, tol_frames, tol_px)
    used_t: set[int] = set()
    used_c: set[int] = set()
    rep = DirectionReport(
        line,
        direction,
        truth=sum(1 for t in truth if not t.optional),
        optional=sum(1 for t in truth if t.optional),
        counted=len(counted),
        matched=0,
        matched_optional=0,
    )
    for opt, _, i, j in pairs:
        if i in used_t or j in used_c:
            continue
        used_t.add(i)
        used_c.add(j)
        if opt:
            rep.matched_optional += 1
        else:
            rep.matched += 1
            rep.matches.append((truth[i], counted[j]))
    rep.missed = [t for i, t in enumerate(truth) if i not in used_t and not t.optional]
    rep.optional_events = [t for t in truth if t.optional]
    rep.extra = [c for j, c in enumerate(counted) if j not in used_c]
    counted_optional = {id(counted[j]) for _, _, i, j in pairs if truth[i].optional and j in used_c}
    rep.per_class = _per_class(
        truth, [c for c in counted if id(c) not in counted_optional], rep.matches, groups
    )
    return rep


def _candidate_pairs(
    truth: list[TruthEvent], counted: list[Counted], tol_frames: float, tol_px: float
) -> list[tuple[bool, float, int, int]]:
    """(optional, cost, truth index, counted index) of every pair within the tolerances, cheapest
    first, required truth before optional."""
    pairs = []
    for i, t in enumerate(truth):
        lo, hi = t.frame, t.until if t.until is not None else t.frame
        for j, c in enumerate(counted):
            dt = max(lo - c.frame, c.frame - hi, 0.0)
            if dt > tol_frames:
                continue
            dd = 0.0
            if t.x is not None and c.x is not None:
                dd = abs(t.x - c.x)
            if t.y is not None and c.y is not None:
                dd = float(np.hypot(dd, t.y - c.y))
            if dd > tol_px:
                continue
            pairs.append((t.optional, dt / max(tol_frames, 1e-9) + dd / max(tol_px, 1e-9), i, j))
    pairs.sort(key=lambda p: (p[0], p[1]))
    return pairs


def _per_class(
    truth: list[TruthEvent],
    counted: list[Counted],
    matches: list[tuple[TruthEvent, Counted]],
    groups: dict[str, list[str]],
) -> dict[str, dict[str, int]]:
    """Truth, counted (less those that matched an optional truth) and same-class matches per class."""
    classes: dict[str, dict[str, int]] = {}
    for t in truth:
        if not t.optional:
            k = t.cls or "all"
            classes.setdefault(k, {"truth": 0, "counted": 0, "matched_same_class": 0})["truth"] += 1
    by_class = any(t.cls for t in truth)
    for c in counted:
        k = _class_of(c.label, groups) if by_class else "all"
        classes.setdefault(k, {"truth": 0, "counted": 0, "matched_same_class": 0})["counted"] += 1
    for t, c in matches:
        if t.cls and _class_of(c.label, groups) == t.cls:
            classes[t.cls]["matched_same_class"] += 1
    return classes


@dataclass
class ValidationResult:
    clip: str
    fps: float
    frames: int
    reports: list[DirectionReport]
    max_error: float
    pictures: list[Path] = field(default_factory=list)
    tracking: dict[str, int] = field(default_factory=dict)
    identity: dict[str, Any] | None = None  # see identity(); None when the truth names no objects

    @property
    def ok(self) -> bool:
        return all(r.error is not None and abs(r.error) <= self.max_error + 1e-9 for r in self.reports)

    def as_dict(self) -> dict[str, Any]:
        tot_t = sum(r.truth for r in self.reports)
        tot_c = sum(r.counted_effective for r in self.reports)
        return {
            "clip": self.clip,
            "fps": self.fps,
            "frames": self.frames,
            "max_error": self.max_error,
            "ok": self.ok,
            "total": {
                "truth": tot_t,
                "counted": tot_c,
                "matched": sum(r.matched for r in self.reports),
                "accuracy": round(1 - abs(tot_c - tot_t) / tot_t, 4) if tot_t else None,
            },
            "lines": [r.as_dict() for r in self.reports],
            "tracking": self.tracking,
            "identity": self.identity,
            "pictures": [str(p) for p in self.pictures],
        }


def clip_info(path: str) -> tuple[float, int, tuple[int, int]]:
    """(fps, frame count, (width, height)) of a video file; ``SourceError`` when unreadable."""
    import cv2

    from agent.errors import SourceError

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"cannot open clip {path}", "give a video file OpenCV can read (mp4, avi, mkv)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return fps, n, size


def compare(
    truth: Truth,
    rows: list[dict],
    t0: float,
    *,
    fps: float,
    frames: int,
    clip: str,
    lines: dict[str, Any],
    frame_size: tuple[int, int],
    tolerance_s: float = 1.0,
    tolerance_px: float | None = None,
    max_error: float = 0.05,
) -> ValidationResult:
    """Match the crossing rows of a run with the truth, for every line both name."""
    from agent.timefmt import parse_iso

    tol_px = tolerance_px if tolerance_px is not None else 0.1 * float(np.hypot(*frame_size))
    reports = []
    groups = truth.class_groups
    for name, tl in truth.lines.items():
        lc = lines.get(name)
        if lc is None:
            continue
        for d in lc.directions:
            counted = [
                Counted((parse_iso(r["ts"]) - t0) * fps, r["x"], r["y"], r["class"], r.get("track_id"))
                for r in rows
                if r["line"] == name and r["direction"] == d
            ]
            events = [e for e in tl.events if e.direction == d]
            reports.append(
                match_direction(
                    name, d, events, counted, tol_frames=tolerance_s * fps, tol_px=tol_px, groups=groups
                )
            )
    return ValidationResult(clip, fps, frames, reports, max_error, identity=identity(reports))


def time_slice(
    clip: str,
    line_px: np.ndarray,
    reports: list[DirectionReport],
    out: Path,
    *,
    max_rows: int = 2400,
    width: int = 900,
) -> Path:
    """Write a time-slice picture of one line: the pixels along the line from every frame, stacked
    top (first frame) to bottom, with a mark on each crossing: green ring matched, red cross missed,
    orange square extra, grey ring an optional truth. A vehicle crossing the line is a streak; a
    mark without a streak, or a streak without a mark, is what to look at."""
    import cv2

    (x1, y1), (x2, y2) = line_px
    n = int(max(2, min(width, np.hypot(x2 - x1, y2 - y1))))
    rows = _line_pixels(clip, line_px, n)
    if not rows:
        rows = [np.zeros((n, 3), np.uint8)]
    step = max(1, int(np.ceil(len(rows) / max_rows)))
    pic = np.stack(rows[::step]).copy()
    scale = 2 if pic.shape[0] * 2 <= max_rows else 1
    pic = np.repeat(pic, scale, axis=0)
    margin = 60
    canvas = np.full((pic.shape[0], pic.shape[1] + margin, 3), 255, np.uint8)
    canvas[:, margin:] = pic
    for f in range(0, len(rows), 50):
        yy = f // step * scale
        cv2.line(canvas, (margin - 8, yy), (margin, yy), (0, 0, 0), 1)
        if f % 100 == 0:
            cv2.putText(canvas, str(f), (2, yy + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    d = np.array([x2 - x1, y2 - y1], float)
    L2 = max(float(d @ d), 1e-9)

    def col(x: float | None, y: float | None) -> int:
        if x is None and y is None:
            return n // 2
        if x is None:  # only y: the point of the line at that height
            x = x1 + (d[0] / d[1]) * (y - y1) if abs(d[1]) > 1e-9 else (x1 + x2) / 2
        if y is None:
            y = y1 + (d[1] / d[0]) * (x - x1) if abs(d[0]) > 1e-9 else (y1 + y2) / 2
        t = ((x - x1) * d[0] + (y - y1) * d[1]) / L2
        return margin + int(np.clip(t, 0, 1) * (n - 1))

    def row(frame: float) -> int:
        return int(np.clip(frame / step * scale, 0, canvas.shape[0] - 1))

    _draw_marks(canvas, reports, col, row)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), canvas)
    return out


def _line_pixels(clip: str, line_px: np.ndarray, n: int) -> list[np.ndarray]:
    """The ``n`` pixels along the line from every frame of the clip, in frame order."""
    import cv2

    (x1, y1), (x2, y2) = line_px
    ts = np.linspace(0.0, 1.0, n)
    cap = cv2.VideoCapture(str(clip))
    rows = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            h, w = img.shape[:2]
            xs = np.clip(np.round(x1 + ts * (x2 - x1)).astype(int), 0, w - 1)
            ys = np.clip(np.round(y1 + ts * (y2 - y1)).astype(int), 0, h - 1)
            rows.append(img[ys, xs])
    finally:
        cap.release()
    return rows


def _draw_marks(
    canvas: np.ndarray,
    reports: list[DirectionReport],
    col: Callable[[float | None, float | None], int],
    row: Callable[[float], int],
) -> None:
    """A mark on each crossing: green ring matched, red cross missed, orange square extra, grey
    ring an optional truth."""
    import cv2

    for r in reports:
        for t in r.optional_events:
            cv2.circle(canvas, (col(t.x, t.y), row(t.frame)), 12, (150, 150, 150), 1)
        for _t, c in r.matches:
            cv2.circle(canvas, (col(c.x, c.y), row(c.frame)), 9, (0, 200, 0), 2)
        for t in r.missed:
            p = (col(t.x, t.y), row(t.frame))
            cv2.drawMarker(canvas, p, (0, 0, 255), cv2.MARKER_TILTED_CROSS, 18, 2)
        for c in r.extra:
            p = (col(c.x, c.y), row(c.frame))
            cv2.rectangle(canvas, (p[0] - 8, p[1] - 8), (p[0] + 8, p[1] + 8), (0, 140, 255), 2)
