"""Incident rules on synthetic tracks: wrong way (and a U-turn), stopped vehicles (jitter, occlusion),
people on the carriageway (passing versus staying), queues; lifecycle and suppression."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import ValidationError

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.types import Detection, Frame, InferenceResult

FPS = 10.0
SIZE = (400, 400)
IMG = np.zeros((400, 400, 3), np.uint8)
LANE = {"name": "lane", "points": [[100, 0], [300, 0], [300, 400], [100, 400]], "units": "px"}


def runner(rules, zones=(LANE,), **extra) -> AnalyticsRunner:
    cfg = CameraAnalytics.model_validate(
        {"zones": list(zones), "incidents": rules, "forecast": {"enabled": False}, **extra}
    )
    return AnalyticsRunner("cam", cfg, None, frame_size=SIZE)


class Feed:
    """Frames of boxes through a runner; collects every incident event it raises."""

    def __init__(self, r: AnalyticsRunner, t0: float = 1_700_000_000.0) -> None:
        self.r, self.t, self.i, self.events = r, t0, 0, []
        r._emit_incident = lambda ev, result: self.events.append(ev)  # the store path is tested live

    def frame(self, objs: list[tuple[str, float, float, float]]) -> None:
        """objs: (label, centre x, bottom y, box height)."""
        dets = [Detection(lab, 0, 0.9, (x - h / 2, y - h, x + h / 2, y)) for lab, x, y, h in objs]
        self.r.process(InferenceResult(Frame("cam", self.i, self.t, 0.0, IMG), "m", dets))
        self.i += 1
        self.t += 1 / FPS

    def kinds(self, phase: str = "start") -> list[str]:
        return [e["kind"] for e in self.events if e["phase"] == phase]


def drive(feed: Feed, ys, x=200.0, h=40.0, label="car"):
    for y in ys:
        feed.frame([(label, x, float(y), h)])


WRONG_WAY = {"kind": "wrong_way", "name": "ww", "zone": "lane", "direction": [0, 1]}


def test_wrong_way_fires_once_per_track_and_ends_when_it_leaves():
    f = Feed(runner([WRONG_WAY]))
    drive(f, range(390, -60, -8))  # up the image, against [0, 1], at ~2 box heights/s
    for _ in range(30):
        f.frame([])
    starts = [e for e in f.events if e["phase"] == "start"]
    assert len(starts) == 1 and starts[0]["kind"] == "wrong_way" and starts[0]["class"] == "car"
    assert 250 <= starts[0]["heading_deg"] <= 290  # up the image
    ends = [e for e in f.events if e["phase"] == "end"]
    assert len(ends) == 1 and ends[0]["id"] == starts[0]["id"] and ends[0]["end"] is not None


def test_right_way_and_slow_creep_back_raise_nothing():
    f = Feed(runner([WRONG_WAY]))
    drive(f, range(10, 400, 8))  # with the lane
    drive(f, np.arange(300, 250, -0.3), x=150)  # a new vehicle rolling back very slowly
    assert f.kinds() == []


def test_u_turn_raises_once_it_has_driven_against_the_lane_far_enough():
    f = Feed(runner([WRONG_WAY]))
    ys = list(range(20, 200, 8)) + list(range(200, 150, -8))  # turns back, 50 px: under 25 % of 400
    drive(f, ys)
    assert f.kinds() == []
    drive(f, range(150, 20, -8))  # keeps going the wrong way
    assert f.kinds() == ["wrong_way"]


def test_wrong_way_id_switch_is_not_a_second_event():
    f = Feed(runner([WRONG_WAY]))
    drive(f, range(390, 250, -6))
    for _ in range(25):  # hidden for 2.5 s, still driving: its track is closed (lost_timeout 1.5 s)
        f.frame([])
    drive(f, range(250 - 6 * 26, -60, -6))  # found again further on: a new track id, same vehicle
    assert f.kinds() == ["wrong_way"]


def test_wrong_way_on_a_line_direction_reports_the_direction_travelled():
    r = runner(
        [{"kind": "wrong_way", "name": "ww", "zone": "lane", "line": "l", "line_direction": "down"}],
        lines=[{"name": "l", "points": [[0, 200], [400, 200]], "units": "px", "directions": ["down", "up"]}],
    )
    f = Feed(r)
    drive(f, range(390, -60, -8))
    starts = [e for e in f.events if e["phase"] == "start"]
    assert len(starts) == 1 and starts[0]["direction"] == "up"


STOP = {"kind": "stopped_vehicle", "name": "stop", "zone": "lane", "min_duration_s": 5, "clear_s": 1}


def test_stopped_vehicle_with_jitter_starts_after_t_and_ends_when_it_moves():
    rng = random.Random(3)
    f = Feed(runner([STOP]))
    drive(f, range(0, 200, 10))  # arrives
    for _ in range(80):  # 8 s standing, boxes jittering by +-2 px
        f.frame([("car", 200 + rng.uniform(-2, 2), 200 + rng.uniform(-2, 2), 40 + rng.uniform(-2, 2))])
    starts = [e for e in f.events if e["phase"] == "start"]
    assert [e["kind"] for e in starts] == ["stopped_vehicle"]
    assert 4.9 <= starts[0]["duration_s"] <= 5.5  # raised once it has stood T = 5 s
    drive(f, range(200, 400, 10))  # drives off
    ends = [e for e in f.events if e["phase"] == "end"]
    assert len(ends) == 1 and ends[0]["id"] == starts[0]["id"]
    assert ends[0]["end_reason"] in ("moved", "left_zone")


def test_stop_shorter_than_t_or_outside_the_zone_is_not_an_event():
    f = Feed(runner([STOP]))
    drive(f, range(0, 200, 10))
    for _ in range(30):  # 3 s < 5 s
        f.frame([("car", 200, 200, 40)])
    drive(f, range(200, 400, 10))
    for _ in range(80):  # standing, but outside the lane polygon
        f.frame([("car", 50, 200, 40)])
    assert f.kinds() == []


def test_occlusion_in_the_middle_of_a_stop_keeps_one_event():
    f = Feed(runner([STOP]))
    drive(f, range(0, 200, 10))
    for _ in range(40):
        f.frame([("car", 200, 200, 40)])
    for _ in range(30):  # hidden 3 s (a bus passes): the track is closed, the stop is kept
        f.frame([])
    for _ in range(40):
        f.frame([("car", 201, 200, 40)])
    starts = [e for e in f.events if e["phase"] == "start"]
    assert len(starts) == 1
    assert not [e for e in f.events if e["phase"] == "end"]
    # 4 s + 3 s hidden + 4 s: the stop started before the occlusion
    assert starts[0]["track_id"] is not None


def test_person_crossing_quickly_is_not_an_event_one_staying_is():
    rule = {"kind": "pedestrian_on_carriageway", "name": "ped", "zone": "lane", "min_duration_s": 3}
    f = Feed(runner([rule]))
    for x in range(60, 340, 20):  # walks across the lane in ~1.4 s
        f.frame([("person", float(x), 300.0, 60.0)])
    for _ in range(30):
        f.frame([])
    assert f.kinds() == []
    for _ in range(50):  # stays 5 s
        f.frame([("person", 200.0, 300.0, 60.0)])
    assert f.kinds() == ["pedestrian_on_carriageway"]
    for x in range(200, 400, 20):
        f.frame([("person", float(x), 300.0, 60.0)])
    for _ in range(40):
        f.frame([])
    assert [e["kind"] for e in f.events if e["phase"] == "end"] == ["pedestrian_on_carriageway"]


def test_queue_starts_when_dense_and_slow_and_clears_when_it_dissolves():
    rule = {
        "kind": "queue",
        "name": "q",
        "zone": "lane",
        "min_vehicles": 3,
        "min_duration_s": 4,
        "clear_s": 2,
        "cooldown_s": 0,
        "update_s": 2,
    }
    f = Feed(runner([rule]))
    for k in range(100):  # three cars crawling at 0.25 box heights/s
        y = 100 + k
        f.frame(
            [
                ("car", 150, y / 10 * 1.0 + 100, 40),
                ("car", 250, y / 10 + 200, 40),
                ("car", 200, y / 10 + 300, 40),
            ]
        )
    assert f.kinds() == ["queue"]
    assert f.kinds("update"), "a lasting queue is updated"
    start = next(e for e in f.events if e["phase"] == "start")
    assert start["vehicles"] == 3 and start["track_id"] is None
    for _ in range(50):  # tracks linger 1.5 s (lost_timeout), then clear_s = 2 s
        f.frame([])
    ends = [e for e in f.events if e["phase"] == "end"]
    assert len(ends) == 1 and ends[0]["end_reason"] == "dissolved"


def test_flush_ends_open_incidents():
    f = Feed(runner([STOP]))
    drive(f, range(0, 200, 10))
    for _ in range(80):
        f.frame([("car", 200, 200, 40)])
    f.r.flush()
    assert f.kinds("end") == ["stopped_vehicle"]
    assert f.events[-1]["end_reason"] == "stopped"


def test_every_event_carries_the_clock_quality():
    r = runner([STOP])
    r.clock = lambda: {"quality": "gps", "trusted": True, "source": "gps", "offset_s": 0.01}
    f = Feed(r)
    drive(f, range(0, 200, 10))
    for _ in range(80):
        f.frame([("car", 200, 200, 40)])
    assert f.events and all(e["clock"]["quality"] == "gps" for e in f.events)


@pytest.mark.parametrize(
    "rules,zones,msg",
    [
        ([{**WRONG_WAY, "zone": "nowhere"}], [LANE], "no zone named 'nowhere'"),
        ([{"kind": "wrong_way", "name": "w", "zone": "lane"}], [LANE], "either direction"),
        ([{"kind": "speeding", "name": "w", "zone": "lane"}], [LANE], "kind"),
        ([{**STOP, "max_speed": 3}], [LANE], "max_speed"),
    ],
)
def test_bad_rules_are_config_errors(rules, zones, msg):
    with pytest.raises(ValidationError, match=msg):
        CameraAnalytics.model_validate({"zones": zones, "incidents": rules})
