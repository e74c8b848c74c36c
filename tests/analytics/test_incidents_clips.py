"""Incident rules on the real motorway clip, transformed by the test: in its own order (no event may
fire), reversed (every vehicle drives the wrong way) and with one frame held still (every vehicle
in view stands).

The detector is stateless, so the detections of a reversed or repeated clip are the clip's own
detections reordered: the test runs the real model over the real frames once (session cache) and
feeds them to the analytics in the transformed order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.inference.catalog import load_catalog
from tests.analytics.conftest import load_truth
from tests.analytics.helpers import feed

# the two carriageways of 4ku_traffic.mp4 (pixels of the 1280x720 frame)
TOWARD = [[670, 270], [790, 270], [1280, 600], [1280, 720], [790, 720]]  # right: traffic moves down
AWAY = [[470, 270], [630, 270], [560, 720], [0, 720], [0, 560]]  # left: traffic moves up
VEHICLES = ["car", "truck", "bus", "motorcycle"]
ARTIFACTS = Path(os.environ.get("EDGE_AGENT_TEST_ARTIFACTS", "test-artifacts")) / "incidents"


def _runner(rules: list[dict]) -> AnalyticsRunner:
    truth = load_truth("4ku_traffic_counts.json")
    cfg = CameraAnalytics.model_validate(
        {
            "lines": [
                {
                    "name": "main",
                    "points": truth["line"]["points"],
                    "anchor": "center",
                    "directions": ["down", "up"],
                    "classes": VEHICLES,
                }
            ],
            "zones": [
                {"name": "toward", "points": TOWARD, "units": "px", "classes": VEHICLES},
                {"name": "away", "points": AWAY, "units": "px", "classes": VEHICLES},
            ],
            "incidents": rules,
            "forecast": {"enabled": False},
        }
    )
    # the default model's own score calibration, as `edge-agent run` gives the tracker
    calibration = load_catalog().get("ssd_mobilenet_v1_coco").tracker
    return AnalyticsRunner("cam", cfg, _Rows(), frame_size=(1280, 720), calibration=calibration)


class _Rows:
    database = None

    def __init__(self):
        self.rows: dict[str, list] = {}

    def submit_rows(self, table, rows, **_):
        self.rows.setdefault(table, []).extend(rows)
        return True

    def submit_fn(self, fn, **_):
        return True


def _capture(r: AnalyticsRunner) -> list[dict]:
    events: list[dict] = []
    r._emit_incident = lambda ev, result: events.append(ev)
    return events


WRONG_WAY = [
    {"kind": "wrong_way", "name": "ww_toward", "zone": "toward", "direction": [0, 1]},
    {"kind": "wrong_way", "name": "ww_away", "zone": "away", "direction": [0, -1]},
]
STOPPED = [  # the default T (min_duration_s = 30 s)
    {"kind": "stopped_vehicle", "name": "stop_toward", "zone": "toward"},
    {"kind": "stopped_vehicle", "name": "stop_away", "zone": "away"},
]


def _report(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=1))
    print(name, figures)


def test_normal_clip_raises_no_incident(clip_detections):
    frames = clip_detections("4ku_traffic.mp4")
    r = _runner(WRONG_WAY + STOPPED)
    events = _capture(r)
    feed(r, frames, 25.0)
    r.flush()
    _report("normal", {"frames": len(frames), "events": len(events)})
    assert events == [], events[:3]


def test_reversed_clip_raises_one_wrong_way_per_vehicle(clip_detections):
    truth = load_truth("4ku_traffic_counts.json")
    frames = clip_detections("4ku_traffic.mp4")[::-1]
    last = len(frames) - 1
    r = _runner(WRONG_WAY)
    events = _capture(r)
    paths = _record_paths(r)
    feed(r, frames, 25.0)
    r.flush()
    starts = [e for e in events if e["phase"] == "start"]
    ends = {e["id"] for e in events if e["phase"] == "end"}
    assert {e["id"] for e in starts} == ends, "every incident ends"
    assert len({e["id"] for e in starts}) == len(starts)
    figures = {}
    for rule, carriageway in (("ww_toward", "toward"), ("ww_away", "away")):
        got = [e for e in starts if e["rule"] == rule]
        # truth in reversed time: a vehicle that crossed y=450 at frame f now crosses it at last - f;
        # an event is on that vehicle when its track passed there then
        tr = [{"frame": last - c["frame"], "x": c["x"]} for c in truth["crossings"][carriageway]]
        near = {  # event -> truth vehicles its track passed where and when they crossed y=450
            e["id"]: {
                i
                for i, t in enumerate(tr)
                if any(
                    abs(f - t["frame"]) <= 12 and abs(x - t["x"]) <= 90 and abs(y - 450) <= 60
                    for f, x, y in paths.get(e["track_id"], [])
                )
            }
            for e in got
        }
        pairs = _max_matching(near)
        figures[rule] = {
            "vehicles": len(tr),
            "events": len(got),
            "vehicles_with_an_event": len(pairs),
            "detection_rate": round(len(pairs) / len(tr), 3),
            "events_on_no_counted_vehicle": sum(1 for v in near.values() if not v),
            "shared_a_vehicle": sum(1 for e, v in near.items() if v and e not in pairs),
            "duplicates": _fragment_pairs([paths.get(e["track_id"], []) for e in got]),
        }
    _report("reversed", figures)
    for f in figures.values():
        assert f["duplicates"] == 0
        assert f["events"] <= f["vehicles"] * 1.05 + 1, f  # no duplicate events
        assert f["vehicles_with_an_event"] >= 0.85 * f["vehicles"], f  # 0.97 and 0.89 measured (README)


def test_frozen_frame_raises_stopped_vehicles_that_end_when_motion_resumes(clip_detections):
    frames = clip_detections("4ku_traffic.mp4")
    k, hold = 360, 25 * 40  # frame 360 held for 40 s (T = 30 s)
    clip = frames[: k + 1] + [frames[k]] * hold + frames[k + 1 :]
    r = _runner(STOPPED)
    events = _capture(r)
    feed(r, clip, 25.0)
    r.flush()
    starts = [e for e in events if e["phase"] == "start"]
    ends = [e for e in events if e["phase"] == "end"]
    ids = {e["track_id"] for e in starts}
    in_zone = _vehicles_in_zones(frames[k])  # strong detections
    seen = _vehicles_in_zones(frames[k], 0.0)  # every detection the tracker was given (threshold 0.3)
    figures = {
        "vehicles_in_zones_in_frame": in_zone,
        "vehicle_boxes_in_zones_any_score": seen,
        "stopped_events": len(starts),
        "ended_after_resume": sum(1 for e in ends if e["end_reason"] in ("moved", "left_zone", "lost")),
        "ended_at_stop": sum(1 for e in ends if e["end_reason"] == "stopped"),
    }
    _report("frozen", figures)
    assert len(ids) == len(starts)
    assert 0.75 * in_zone <= len(starts) <= seen, figures
    t_resume = 1_700_000_000.0 + (k + hold) / 25.0
    for e in ends:
        assert e["end_reason"] != "stopped", e  # every stop ended once the traffic moved on
        assert _iso(e["end"]) >= t_resume - 0.1
    assert {e["id"] for e in ends} == {e["id"] for e in starts}


def _max_matching(near: dict[str, set[int]]) -> dict[str, int]:
    """A largest one-to-one pairing of events with the vehicles they may be on (augmenting paths)."""
    owner: dict[int, str] = {}

    def place(e: str, seen: set[int]) -> bool:
        for v in near[e]:
            if v in seen:
                continue
            seen.add(v)
            if v not in owner or place(owner[v], seen):
                owner[v] = e
                return True
        return False

    for e in near:
        place(e, set())
    return {e: v for v, e in owner.items()}


def _fragment_pairs(paths: list[list[tuple[int, float, float]]]) -> int:
    """Events on two pieces of one broken track: the later track starts, within 1.5 s of the earlier
    one's end, where the earlier one (moving on at its last velocity) would be. Two tracks seen at the
    same time are two objects."""
    n = 0
    for a in paths:
        for b in paths:
            if a is b or not a or not b or not (0 < b[0][0] - a[-1][0] <= 38):
                continue
            (f0, x0, y0), (f1, x1, y1) = a[max(0, len(a) - 6)], a[-1]
            vx, vy = (x1 - x0) / max(f1 - f0, 1), (y1 - y0) / max(f1 - f0, 1)
            gap = b[0][0] - f1
            if (
                np.hypot(b[0][1] - (x1 + vx * gap), b[0][2] - (y1 + vy * gap))
                <= 60 + 0.3 * np.hypot(vx, vy) * gap
            ):
                n += 1
    return n


def _record_paths(r: AnalyticsRunner) -> dict[int, list[tuple[int, float, float]]]:
    """Every confirmed track's matched centre points per frame (to tell which vehicle an event is on)."""
    paths: dict[int, list[tuple[int, float, float]]] = {}
    process = r.process

    def wrapped(result):
        out = process(result)
        for t in r.tracker.tracks:
            if t.confirmed and t.matched:
                paths.setdefault(t.id, []).append((result.frame.index, *t.anchor("center")))
        return out

    r.process = wrapped
    return paths


def _vehicles_in_zones(dets, least: float | None = None) -> int:
    """Vehicles in the two zones whose detection scores ``least`` or more (default: the model's high
    threshold, strong enough to hold a track), nested duplicate boxes counted once (max_overlap)."""
    import cv2

    from agent.analytics.tracking import suppress_nested

    cal = load_catalog().get("ssd_mobilenet_v1_coco").tracker
    least = cal["high_threshold"] if least is None else least
    strong = [d for d in dets if d.label in VEHICLES and d.score >= least]
    if not strong:
        return 0
    keep = suppress_nested(
        np.array([d.box for d in strong], float), np.array([d.score for d in strong]), cal["max_overlap"]
    )
    n = 0
    for i in keep:
        d = strong[i]
        x, y = (d.box[0] + d.box[2]) / 2, d.box[3]
        if any(cv2.pointPolygonTest(np.array(p, np.float32), (x, y), False) >= 0 for p in (TOWARD, AWAY)):
            n += 1
    return n


def _iso(s: str) -> float:
    from agent.timefmt import parse_iso

    return parse_iso(s)
