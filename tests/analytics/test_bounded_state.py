"""Per-track state stays bounded over a long run (#15 soak): the real runner, tracker, lines and
incident rules, fed thousands of frames of cars, one-frame flickers (tracks that never confirm) and
new epochs (a looping file). What a unit holds must not grow with the number of tracks it has seen."""

from __future__ import annotations

import numpy as np

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.types import Detection, Frame, InferenceResult

CFG = {
    "lines": [{"name": "l", "points": [[0, 0.5], [1, 0.5]], "directions": ["down", "up"]}],
    "zones": [{"name": "z", "points": [[0, 0.3], [1, 0.3], [1, 0.9], [0, 0.9]]}],
    "incidents": [
        {"kind": "stopped_vehicle", "name": "s", "zone": "z", "min_duration_s": 0.5, "clear_s": 0.2}
    ],
    "forecast": {"enabled": False},
    "bin_minutes": 1,
}
IMG = np.zeros((400, 400, 3), np.uint8)


def _sizes(r: AnalyticsRunner) -> dict[str, int]:
    rules = r.incidents.rules if r.incidents is not None else []
    return {
        "tracks": len(r.tracker.tracks),
        "meta": len(r._meta),
        "seg_marks": len(r._seg_marks),
        "line_state": max((len(lc._state) for lc in r.lines.values()), default=0),
        "fired": max((len(getattr(rule, "fired", ())) for rule in rules), default=0),
        "motion": len(r.incidents.motion._hist) if r.incidents is not None else 0,
    }


def _cycle(r: AnalyticsRunner, i: int, t0: float, epoch: int, rng: np.random.Generator) -> int:
    """One car drives down, stops in the zone (a stopped-vehicle incident), drives on; flickers
    (one-frame boxes far from it) appear now and then; then the road is empty until it closes."""
    ys = [*range(20, 200, 12), *[200] * 30, *range(200, 400, 12)]
    for k, y in enumerate(ys):
        dets = [Detection("car", 3, 0.9, (180.0, y - 40.0, 220.0, float(y)))]
        if k % 3 == 0:  # a flicker: a box for one frame only, a new tentative track that never confirms
            x, fy = rng.uniform(0, 100), rng.uniform(60, 380)
            dets.append(Detection("car", 3, 0.9, (x, fy - 30, x + 30, fy)))
        r.process(InferenceResult(Frame("cam", i, t0 + i * 0.1, 0.0, IMG, epoch=epoch), "m", dets))
        i += 1
    for _ in range(40):  # the track closes (lost timeout)
        r.process(InferenceResult(Frame("cam", i, t0 + i * 0.1, 0.0, IMG, epoch=epoch), "m", []))
        i += 1
    return i


def test_per_track_state_stays_bounded_over_many_tracks():
    r = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), None, frame_size=(400, 400))
    rng = np.random.default_rng(15)
    t0 = 1_800_000_000.0
    i, peak = 0, dict.fromkeys(_sizes(r), 0)
    for cycle in range(60):
        i = _cycle(r, i, t0, epoch=cycle // 10, rng=rng)  # a new epoch every 10 cars, as a file loops
        s = _sizes(r)
        peak = {k: max(peak[k], s[k]) for k in s}
        # after a frame, only tracks the tracker still holds have state
        assert s["meta"] <= s["tracks"] and s["line_state"] <= s["tracks"], s
    seen = r.tracker.next_id - 1
    assert seen > 600  # many tracks came and went (the car and the flickers)
    assert r.incidents is not None and r.incidents.counts.get("stopped_vehicle", 0) >= 30  # rules fired
    assert max(peak.values()) <= 5, peak  # a handful at any time, not hundreds


def test_state_of_a_track_cut_off_by_a_new_epoch_goes():
    r = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), None, frame_size=(400, 400))
    t0 = 1_800_000_000.0
    box = Detection("car", 3, 0.9, (180.0, 60.0, 220.0, 100.0))
    r.process(InferenceResult(Frame("cam", 0, t0, 0.0, IMG, epoch=0), "m", [box]))  # tentative
    assert len(r._meta) == 1 and len(r.lines["l"]._state) == 1
    r.process(InferenceResult(Frame("cam", 1, t0 + 0.1, 0.0, IMG, epoch=1), "m", []))  # the file loops
    assert r._meta == {} and r.lines["l"]._state == {}
