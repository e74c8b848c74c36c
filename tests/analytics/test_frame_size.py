"""A camera that comes back at another resolution keeps counting (AnalyticsRunner.on_frame_size)."""

from __future__ import annotations

import numpy as np

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.types import Detection, Frame, InferenceResult

CFG = {
    "lines": [
        # normalized: follows the picture by itself
        {"name": "norm", "points": [[0, 0.5], [1, 0.5]], "directions": ["down", "up"]},
        # pixels, drawn on the 640x360 picture: scaled with it
        {"name": "px", "points": [[0, 270], [640, 270]], "units": "px", "directions": ["down", "up"]},
    ],
    "zones": [{"name": "top", "points": [[0, 0], [1, 0], [1, 0.3], [0, 0.3]]}],
}


def _drive(r, size, n_cars, i0, t0):
    """Cars one after the other driving down the middle of a ``size`` picture at 10 fps."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    i = i0
    for _ in range(n_cars):
        for k in range(30):
            y = h * (0.05 + k * 0.032)  # bottom edge from 5 % to 98 % of the height
            box = (0.45 * w, y - 0.1 * h, 0.55 * w, y)
            r.process(
                InferenceResult(
                    Frame("cam", i, t0 + i * 0.1, t0 + i * 0.1, img), "m", [Detection("car", 2, 0.9, box)]
                )
            )
            i += 1
        for _ in range(20):  # a gap: the track ends
            r.process(InferenceResult(Frame("cam", i, t0 + i * 0.1, t0 + i * 0.1, img), "m", []))
            i += 1
    return i


def _counts(r):
    s = r.state()["since_start"]
    return {ln: sum(n for d in s.get(ln, {}).values() for n in d.values()) for ln in ("norm", "px")}


def test_new_frame_size_rebuilds_lines_and_keeps_counts():
    r = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), None)
    t0 = 1_700_000_000.0
    i = _drive(r, (640, 360), 3, 0, t0)
    assert _counts(r) == {"norm": 3, "px": 3}
    assert r.lines["px"].p1.tolist() == [0.0, 270.0]
    # the stream returns at 320x180 (a reconnect, a new profile)
    i = _drive(r, (320, 180), 4, i, t0)
    assert r.frame_size == (320, 180)
    assert r.lines["px"].p1.tolist() == [0.0, 135.0] and r.lines["norm"].p1.tolist() == [0.0, 90.0]
    assert _counts(r) == {"norm": 7, "px": 7}  # the 3 before are kept, the 4 after are counted
    # and back: pixel points return to where they were drawn
    _drive(r, (640, 360), 1, i, t0)
    assert r.lines["px"].p1.tolist() == [0.0, 270.0]
    assert _counts(r) == {"norm": 8, "px": 8}


def test_tracks_end_at_the_switch():
    r = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), None)
    t0 = 1_700_000_000.0
    img = np.zeros((360, 640, 3), np.uint8)
    for k in range(10):  # one car, mid-way
        r.process(
            InferenceResult(
                Frame("cam", k, t0 + k / 10, t0 + k / 10, img),
                "m",
                [Detection("car", 2, 0.9, (300, 100 + 5 * k, 360, 140 + 5 * k))],
            )
        )
    ids_before = {t.id for t in r.tracker.tracks}
    assert ids_before
    small = np.zeros((180, 320, 3), np.uint8)
    ids = r.process(
        InferenceResult(
            Frame("cam", 10, t0 + 1.0, t0 + 1.0, small), "m", [Detection("car", 2, 0.9, (150, 60, 180, 80))]
        )
    )
    assert not ({t.id for t in r.tracker.tracks} & ids_before)  # no track carried over in old pixels
    assert ids == [None] or ids[0] not in ids_before
