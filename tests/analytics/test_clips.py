"""Counting on real clips against hand-annotated ground truth (tests/data)."""

from __future__ import annotations

import pytest

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from tests.analytics.conftest import load_truth
from tests.analytics.helpers import feed, match

# running the detector over a whole clip takes minutes on a loaded machine (CI): more than the
# suite's per-test timeout, which is meant to catch hangs
pytestmark = pytest.mark.timeout(1800)

TRACKER = {"high_threshold": 0.4, "new_track_threshold": 0.45, "low_threshold": 0.3, "max_overlap": 0.5}


def _traffic_runner(truth: dict, writer=None) -> AnalyticsRunner:
    ln = truth["line"]
    cfg = CameraAnalytics.model_validate(
        {
            "tracker": TRACKER,
            "lines": [
                {
                    "name": "main",
                    "points": ln["points"],
                    "anchor": ln["anchor"],
                    "directions": ln["directions"],
                    "classes": ["car", "truck", "bus", "motorcycle"],
                }
            ],
        }
    )
    return AnalyticsRunner("cam", cfg, writer, frame_size=tuple(truth["frame_size"]))


def _counted(runner_rows: list[dict], direction: str, t0: float, fps: float) -> list[tuple[int, float]]:
    return [(round((r["ts"] - t0) * fps), r["x"]) for r in runner_rows if r["direction"] == direction]


class _Rows:
    """A writer double that keeps what it is given (the store itself is tested in test_runner)."""

    database = None

    def __init__(self):
        self.rows: dict[str, list] = {}

    def submit_rows(self, table, rows, **_):
        self.rows.setdefault(table, []).extend(rows)
        return True

    def submit_fn(self, fn, **_):
        return True


def test_4ku_traffic_counts_match_ground_truth(clip_detections):
    truth = load_truth("4ku_traffic_counts.json")
    frames = clip_detections(truth["clip"])
    assert len(frames) == truth["frames"]
    w = _Rows()
    r = _traffic_runner(truth, w)
    feed(r, frames, truth["fps"])
    counts = r.state()["since_start"]["main"]
    got = {d: sum(counts.get(d, {}).values()) for d in truth["line"]["directions"]}
    print("counter:", got, "truth:", {d: len(v) for d, v in truth["crossings"].items()})
    from agent.timefmt import parse_iso

    rows = [
        {"ts": parse_iso(x["ts"]), "x": x["x"], "direction": x["direction"]}
        for x in w.rows.get("crossings", [])
    ]
    for d, events in truth["crossings"].items():
        m, missed, extra = match(events, _counted(rows, d, 1_700_000_000.0, truth["fps"]))
        print(f"{d}: truth {len(events)} counted {got[d]} matched {m} missed {missed} extra {extra}")
        assert abs(got[d] - len(events)) <= 0.10 * len(events), (d, got[d], len(events))
        assert m >= 0.85 * len(events)  # the counts are the right vehicles, not compensating errors


def test_person_clip_counts_people_leaving(clip_detections):
    truth = load_truth("intel_person_counts.json")
    frames = clip_detections(truth["clip"])
    ln = truth["line"]
    cfg = CameraAnalytics.model_validate(
        {
            "tracker": {"lost_timeout_s": 2.0},
            "lines": [
                {
                    "name": "exit",
                    "points": ln["points"],
                    "directions": ln["directions"],
                    "classes": ["person"],
                }
            ],
        }
    )
    w = _Rows()
    r = AnalyticsRunner("cam", cfg, w, frame_size=tuple(truth["frame_size"]))
    feed(r, frames, truth["fps"])
    counts = r.state()["since_start"].get("exit", {})
    from agent.timefmt import parse_iso

    rows = [
        {"ts": parse_iso(x["ts"]), "x": x["x"], "direction": x["direction"]}
        for x in w.rows.get("crossings", [])
    ]
    for d in ln["directions"]:
        events = truth["crossings"].get(d, [])
        got = sum(counts.get(d, {}).values())
        print(
            d,
            "counted",
            got,
            "truth",
            len(events),
            [(round((x["ts"] - 1.7e9) * truth["fps"])) for x in rows if x["direction"] == d],
        )
        assert got == len(events)
        m, _, _ = match(events, _counted(rows, d, 1_700_000_000.0, truth["fps"]), tol_frames=15, tol_x=200)
        assert m == len(events)
