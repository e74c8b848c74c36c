"""Tracking + counting cost per frame with 10 and 50 objects (prints figures; not a timed test).

    .venv/bin/python benchmarks/analytics_bench.py [--frames 2000]

Synthetic scene, 1280x720: N objects drive down or up through two counting lines and a zone, with
box jitter, at 10 fps; a random 5 % of detections are dropped (occlusion). Measures
``AnalyticsRunner.process`` (tracker, lines, zones, bins) without a database writer.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.types import Detection, Frame, InferenceResult

CFG = {
    "lines": [{"name": "a", "points": [[0, 0.4], [1, 0.4]]}, {"name": "b", "points": [[0, 0.7], [1, 0.7]]}],
    "zones": [{"name": "z", "points": [[0.1, 0.45], [0.9, 0.45], [0.9, 0.65], [0.1, 0.65]]}],
    "calibration": {
        "image_points": [[400, 300], [880, 300], [1200, 700], [80, 700]],
        "world_points": [[0, 60], [12, 60], [12, 0], [0, 0]],
    },
    "speed_segments": [{"name": "ab", "line_a": "a", "line_b": "b"}],
}


def run(n: int, frames: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    r = AnalyticsRunner("bench", CameraAnalytics.model_validate(CFG), None, frame_size=(1280, 720))
    lanes = rng.uniform(40, 1200, n)
    speed = rng.uniform(4, 12, n) * rng.choice([-1, 1], n)
    phase = rng.uniform(0, 720, n)
    img = np.zeros((720, 1280, 3), np.uint8)
    times = []
    for i in range(frames):
        y = (phase + speed * i) % 820 - 50
        dets = []
        for k in range(n):
            if rng.random() < 0.05:
                continue
            j = rng.uniform(-2, 2, 4)
            dets.append(
                Detection(
                    "car",
                    2,
                    float(rng.uniform(0.3, 0.95)),
                    (lanes[k] - 20 + j[0], y[k] - 30 + j[1], lanes[k] + 20 + j[2], y[k] + j[3]),
                )
            )
        res = InferenceResult(Frame("bench", i, 1e9 + i / 10, i / 10, img), "m", dets)
        t = time.perf_counter()
        r.process(res)
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    args = ap.parse_args()
    for n in (10, 50):
        t = run(n, args.frames)[50:]
        print(
            f"{n:3d} objects: mean {statistics.fmean(t):.3f} ms  p50 {statistics.median(t):.3f} ms  "
            f"p95 {np.percentile(t, 95):.3f} ms per frame ({len(t)} frames)"
        )


if __name__ == "__main__":
    main()
