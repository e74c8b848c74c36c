"""Line rules (jitter, U-turns, far side), speed through a homography, zones."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agent.analytics.config import CameraAnalytics, LineConfig, ZoneConfig
from agent.analytics.counting import LineCounter
from agent.analytics.runner import AnalyticsRunner
from agent.analytics.speed import GroundPlane
from agent.analytics.zones import Zone
from agent.types import Detection, Frame, InferenceResult
from tests.analytics.helpers import image

LINE = LineConfig(
    name="l",
    points=[(0, 100), (200, 100)],
    directions=("down", "up"),
    anchor="center",
    hysteresis_px=5,
    hysteresis_rel=0,
)


def _run(ys, line=LINE, x=100.0):
    lc = LineCounter(line, (200, 200))
    return [c.direction for i, y in enumerate(ys) if (c := lc.observe(1, (x, y), 20, i * 0.1, i, "car"))]


def test_clean_crossing_counts_once_with_direction():
    assert _run(range(60, 140, 4)) == ["down"]
    assert _run(range(140, 60, -4)) == ["up"]


def test_jitter_on_the_line_counts_once():
    rng = random.Random(1)
    ys = (
        [70 + i for i in range(28)]
        + [100 + rng.uniform(-4.5, 4.5) for _ in range(200)]
        + [100 + i for i in range(6, 40)]
    )
    assert _run(ys) == ["down"]


def test_large_oscillation_counts_at_most_once_per_direction():
    ys = [70, 80, 90, 110, 120, 90, 80, 120, 80, 120, 80, 120]
    assert _run(ys) == ["down", "up"]


def test_stop_on_line_and_turn_back_is_not_a_crossing():
    ys = [60, 70, 80, 90, 97, 100, 103, 104, 103, 100, 95, 85, 70, 60]
    assert _run(ys) == []


def test_track_first_seen_on_far_side_is_not_counted():
    assert _run([120, 130, 140, 150]) == []
    assert _run([101, 103, 110, 130]) == []  # born inside the band: no side to come from


def test_crossing_outside_the_segment_is_not_counted():
    assert _run(range(60, 140, 4), x=260.0) == []


def test_counting_line_normalized_points():
    lc = LineCounter(LineConfig(name="n", points=[(0.0, 0.5), (1.0, 0.5)]), (400, 200))
    assert lc.p1.tolist() == [0.0, 100.0] and lc.length == 400


def _runner(cfg: dict, size=(1000, 1000)):
    return AnalyticsRunner("cam", CameraAnalytics.model_validate(cfg), None, frame_size=size)


def _frame(i, ts, boxes, label="car", size=(1000, 1000)):
    return InferenceResult(
        Frame("cam", i, ts, ts, image(size)),
        "m",
        [Detection(label, 2, 0.9, tuple(b)) for b in boxes],
    )


def test_runner_jittery_detections_through_tracker_count_once():
    r = _runner({"lines": [{"name": "l", "points": [[0, 500], [1000, 500]], "directions": ["down", "up"]}]})
    rng = np.random.default_rng(3)
    ys = (
        list(np.linspace(300, 500, 40))
        + [500 + rng.uniform(-12, 12) for _ in range(60)]
        + list(np.linspace(500, 700, 40))
    )
    for i, y in enumerate(ys):  # box bottom follows y with +-3 px jitter on every edge
        j = rng.uniform(-3, 3, 4)
        r.process(_frame(i, 1000 + i * 0.1, [(480 + j[0], y - 60 + j[1], 560 + j[2], y + j[3])]))
    assert r.state()["since_start"]["l"] == {"down": {"car": 1}}


def _homography():
    img = [(300, 400), (700, 400), (900, 900), (100, 900)]
    world = [(0, 60), (10, 60), (10, 0), (0, 0)]  # a 10 m x 60 m stretch of road
    return img, world


@pytest.mark.parametrize("kmh", [30.0, 50.0, 90.0])
def test_zone_speed_of_synthetic_track_within_2_percent(kmh):
    img, world = _homography()
    gp = GroundPlane(img, world)
    Hinv = np.linalg.inv(gp.H)
    zone = [(250, 450), (750, 450), (850, 850), (150, 850)]
    r = AnalyticsRunner(
        "cam",
        CameraAnalytics.model_validate(
            {
                "zones": [{"name": "z", "points": zone}],
                "calibration": {"image_points": img, "world_points": world},
            }
        ),
        None,
        frame_size=(1000, 1000),
    )
    v = kmh / 3.6
    fps = 12.0
    rng = np.random.default_rng(0)
    for i in range(int(70 / v * fps)):
        t = i / fps
        wy = -5 + v * t  # driving along y (world), from behind the camera's view to beyond it
        if wy > 65:
            break
        p = Hinv @ np.array([5.0, wy, 1.0])
        u, vv = p[0] / p[2], p[1] / p[2]
        ts = 1000 + t + rng.uniform(-0.002, 0.002)  # a few ms of timestamp jitter
        r.process(_frame(i, ts, [(u - 40, vv - 60, u + 40, vv)]))
    r.flush()
    speeds = r.speeds_recent
    assert len(speeds) == 1
    assert speeds[0] == pytest.approx(kmh, rel=0.02)


def test_segment_speed_between_two_lines():
    img, world = _homography()
    gp = GroundPlane(img, world)
    Hinv = np.linalg.inv(gp.H)

    def px(wx, wy):
        p = Hinv @ np.array([wx, wy, 1.0])
        return [p[0] / p[2], p[1] / p[2]]

    a, b = [px(-2, 40), px(12, 40)], [px(-2, 10), px(12, 10)]  # 30 m apart
    r = AnalyticsRunner(
        "cam",
        CameraAnalytics.model_validate(
            {
                "lines": [{"name": "a", "points": a}, {"name": "b", "points": b}],
                "speed_segments": [{"name": "ab", "line_a": "a", "line_b": "b"}],
                "calibration": {"image_points": img, "world_points": world},
            }
        ),
        None,
        frame_size=(1000, 1000),
    )
    v = 72 / 3.6
    for i in range(60):
        wy = 55 - v * i / 10
        u, vv = px(5, wy)
        r.process(_frame(i, 1000 + i / 10, [(u - 30, vv - 50, u + 30, vv)]))
    assert r.speeds_recent and r.speeds_recent[0] == pytest.approx(72, rel=0.02)


def test_zone_occupancy_and_dwell():
    z = Zone(ZoneConfig(name="z", points=[(0, 0), (100, 0), (100, 100), (0, 100)]), None)
    for k in range(10):
        z.observe(1, (50, 50), k, "car")
        if k >= 3:
            z.observe(2, (20, 20 + k), k, "person")
    assert z.occupancy == 2 and z.peak == 2
    z.observe(1, (300, 50), 10, "car")  # left
    done = z.take_closed({1, 2})
    assert [(v.track_id, v.dwell_s) for v in done] == [(1, 9)]
    assert z.occupancy == 1
