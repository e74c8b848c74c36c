"""Counting at the edges of what the detector sees: an object that leaves the frame just past a
line near its edge (seen only on predicted positions there), and one object seen as two boxes (a
lorry's cab and its load) that must count once, while two vehicles side by side count twice."""

from __future__ import annotations

import numpy as np
import pytest

from agent.analytics.boxes import came_from_edge, leaving_view
from agent.analytics.config import CameraAnalytics
from agent.analytics.counting import Crossing, SameObject
from agent.analytics.runner import AnalyticsRunner
from agent.types import Detection, Frame, InferenceResult
from tests.analytics.helpers import CrossingRows

_IMG = np.zeros((480, 640, 3), dtype=np.uint8)  # the runner takes the frame size from it
FPS = 25.0


def _runner(line_y: float) -> tuple[AnalyticsRunner, CrossingRows]:
    cfg = CameraAnalytics.model_validate(
        {"lines": [{"name": "l", "points": [[0, line_y], [640, line_y]], "directions": ["down", "up"]}]}
    )
    w = CrossingRows()
    return AnalyticsRunner("cam", cfg, w, frame_size=(640, 480)), w


def _feed(r: AnalyticsRunner, frames: list[list[Detection]]) -> None:
    for i, dets in enumerate(frames):
        f = Frame("cam", i, 1_700_000_000.0 + i / FPS, i / FPS, _IMG, pos_s=i / FPS, epoch=0)
        r.process(InferenceResult(f, "m", dets))


def _det(x1: float, y1: float, x2: float, y2: float, label: str = "car", score: float = 0.8) -> Detection:
    return Detection(label, 2, score, (x1, y1, x2, y2))


def _car_down(bottom: float, cx: float = 320.0, w: float = 90.0, h: float = 80.0) -> list[Detection]:
    return [_det(cx - w / 2, bottom - h, cx + w / 2, bottom)]


def test_leaving_view_needs_the_edge_it_moves_toward():
    size = (640, 480)
    assert leaving_view((300, 400, 390, 480), (0.0, 8.0), size)  # at the bottom, moving down
    assert not leaving_view((300, 400, 390, 480), (0.0, -8.0), size)  # at the bottom, moving up
    assert not leaving_view((300, 300, 390, 380), (0.0, 8.0), size)  # moving down, not there yet
    assert leaving_view((-5, 200, 60, 260), (-3.0, 0.0), size)  # out through the left side
    assert leaving_view((600, 0, 640, 30), (2.0, -1.0), size)


def test_object_leaving_the_frame_past_a_line_near_its_edge_counts_once():
    # a car moving down 10 px a frame toward a line 25 px above the frame's bottom: the detector
    # loses it when its bottom is 12 px short of the line (vehicles cut by the frame's edge are seen
    # badly); its predicted box carries on over the line and out of the frame
    frames = [_car_down(b) for b in range(200, 444, 10)] + [[] for _ in range(30)]
    r, w = _runner(line_y=455)
    _feed(r, frames)
    assert [c["direction"] for c in w.crossings] == ["down"]


def test_track_lost_before_a_line_mid_frame_still_does_not_count():
    # the same loss far from the frame's edge: its prediction crosses the line but never leaves the
    # view within the prediction window, so nothing counts (a box whose detections stop near a line
    # is more often a duplicate than an object that went on)
    frames = [_car_down(b) for b in range(100, 244, 10)] + [[] for _ in range(60)]
    r, w = _runner(line_y=255)
    _feed(r, frames)
    assert w.crossings == []


def test_object_seen_leaving_the_other_way_is_not_counted_by_the_edge_rule():
    # a car driving down to the line and back up out of the top: no crossing at all
    frames = [_car_down(b) for b in range(150, 240, 10)] + [_car_down(b) for b in range(240, 60, -10)]
    frames += [[] for _ in range(30)]
    r, w = _runner(line_y=255)
    _feed(r, frames)
    assert w.crossings == []


def test_two_vehicles_side_by_side_count_twice_and_a_lorry_with_a_nested_box_once():
    # a lorry (200 px long) with a second box on its front half, moving down across the line;
    # beside it, two cars in adjacent lanes crossing at the same moment
    frames = []
    for i in range(40):
        top = 8 * i
        lorry = _det(100, top, 200, top + 200, "truck")
        cab = _det(102, top + 110, 198, top + 200, "truck", 0.7)
        car_a = _det(330, top + 130, 410, top + 200)
        car_b = _det(425, top + 130, 505, top + 200)
        frames.append([lorry, cab, car_a, car_b])
    r, w = _runner(line_y=300)
    _feed(r, frames)
    assert sorted(c["class"] for c in w.crossings) == ["car", "car", "truck"]


def test_same_object_forgets_after_its_window_and_keeps_other_lines_apart():
    so = SameObject(window_s=0.6, min_overlap=0.7)
    boxes = {1: np.array([0.0, 0.0, 100.0, 100.0]), 2: np.array([10.0, 10.0, 90.0, 90.0])}
    first = Crossing("l", "down", "car", 1, 10.0, 250, (50.0, 100.0))
    assert not so.duplicate(first, boxes)
    assert so.duplicate(Crossing("l", "down", "car", 2, 10.2, 255, (50.0, 100.0)), boxes)
    assert not so.duplicate(Crossing("m", "down", "car", 2, 10.2, 255, (50.0, 100.0)), boxes)  # another line
    assert not so.duplicate(Crossing("l", "up", "car", 2, 10.3, 258, (50.0, 100.0)), boxes)  # other way
    assert not so.duplicate(Crossing("l", "down", "car", 2, 11.0, 275, (50.0, 100.0)), boxes)  # too late


def _car_up(bottom: float, cx: float = 320.0, w: float = 90.0, h: float = 80.0) -> list[Detection]:
    return [_det(cx - w / 2, bottom - h, cx + w / 2, bottom)]


def test_came_from_edge_follows_the_motion_back_to_the_edge():
    size = (640, 480)
    # 30 px above the bottom, moving up: it came in from below; the shift puts it wholly beyond
    shift = came_from_edge((280, 370, 360, 450), (0.0, -8.0), size)
    assert shift is not None and shift[0] == 0 and shift[1] == pytest.approx(110)
    # moving up and to the right from the bottom-left: back along its motion, out through the bottom
    shift = came_from_edge((60, 390, 140, 450), (6.0, -6.0), size)
    assert shift is not None and shift[0] < 0 and 450 + shift[1] >= 480
    assert came_from_edge((280, 200, 360, 280), (0.0, -8.0), size) is None  # mid-frame
    assert came_from_edge((280, 400, 360, 480), (0.0, -8.0), size) is None  # cut by the edge
    assert came_from_edge((280, 370, 360, 450), (0.0, 8.0), size) is None  # moving toward that edge
    assert came_from_edge((280, 370, 360, 450), (0.0, -0.5), size) is None  # nearly still


def test_object_first_seen_just_inside_the_edge_counts_the_line_it_passed_to_get_there():
    # a car coming up from the bottom edge, found by the detector only once wholly in view (its
    # bottom 25 px above the frame's edge), already past a line 15 px from the edge
    frames = [_car_up(b) for b in range(455, 200, -8)]
    r, w = _runner(line_y=465)
    _feed(r, frames)
    assert [c["direction"] for c in w.crossings] == ["up"]
    from agent.timefmt import parse_iso

    assert parse_iso(w.crossings[0]["ts"]) == pytest.approx(1_700_000_000.0, abs=0.01)  # when first seen


def test_object_first_seen_mid_frame_past_a_line_is_still_not_counted():
    # the same car first seen far from any edge, already past the line: appearing beyond a line never
    # counts (it may be a fragment, or an object that came from behind something)
    frames = [_car_up(b) for b in range(300, 100, -8)]
    r, w = _runner(line_y=330)
    _feed(r, frames)
    assert w.crossings == []


def test_object_cut_by_the_edge_counts_by_the_usual_rule_once():
    # boxes cut by the bottom edge at first (their bottom is the edge), then wholly in view
    frames = [[_det(275, 480 - 20 - 10 * i, 365, 480)] for i in range(6)]
    frames += [_car_up(b) for b in range(470, 250, -8)]
    r, w = _runner(line_y=420)
    _feed(r, frames)
    assert [c["direction"] for c in w.crossings] == ["up"]
