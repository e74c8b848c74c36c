"""Shared helpers: run a runner over per-frame detections, match counted crossings to ground truth."""

from __future__ import annotations

import numpy as np

from agent.types import Detection, Frame, InferenceResult

_IMAGES: dict[tuple[int, int], np.ndarray] = {}


def image(size: tuple[int, int] | None) -> np.ndarray:
    """A blank frame of ``size`` (w, h): the runner takes the frame size from the frame it is given
    (a 1x1 stand-in would tell it the camera is 1x1 pixels, and every box at its edge)."""
    w, h = size or (1280, 720)
    if (w, h) not in _IMAGES:
        _IMAGES[(w, h)] = np.zeros((h, w, 3), dtype=np.uint8)
    return _IMAGES[(w, h)]


class CrossingRows:
    """A writer double that keeps the crossing rows it is given (the store is tested in test_runner)."""

    database = None

    def __init__(self):
        self.crossings: list[dict] = []

    def submit_rows(self, table, rows, **_):
        if table == "crossings":
            self.crossings.extend(rows)
        return True

    def submit_fn(self, fn, **_):
        return True


def feed(runner, frames: list[list[Detection]], fps: float, t0: float = 1_700_000_000.0, step: int = 1):
    """Run ``runner`` over the frames; returns the per-frame track ids."""
    ids = []
    img = image(runner.frame_size)
    for i in range(0, len(frames), step):
        fr = Frame("cam", i, t0 + i / fps, i / fps, img)
        ids.append(runner.process(InferenceResult(fr, "ssd", list(frames[i]))))
    return ids


def match(
    truth: list[dict], counted: list[tuple[int, float]], tol_frames: int = 25, tol_x: float = 120
) -> tuple[int, int, int]:
    """Greedy one-to-one matching of (frame, x) events. Returns (matched, missed, extra)."""
    used = set()
    matched = 0
    for t in sorted(truth, key=lambda e: e["frame"]):
        best, bd = None, None
        for j, (f, x) in enumerate(counted):
            if j in used or abs(f - t["frame"]) > tol_frames or abs(x - t["x"]) > tol_x:
                continue
            d = abs(f - t["frame"]) + abs(x - t["x"]) / 10
            if bd is None or d < bd:
                best, bd = j, d
        if best is not None:
            used.add(best)
            matched += 1
    return matched, len(truth) - matched, len(counted) - matched
