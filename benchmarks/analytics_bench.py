"""Tracking + counting cost per frame with 10 and 50 objects (prints figures; not a timed test).

    .venv/bin/python benchmarks/analytics_bench.py [--frames 2000] [--clock cpu] [--against DIR]

``--clock cpu`` times each frame in this thread's CPU time (``time.thread_time``), which a machine
shared with other work disturbs far less than wall time. ``--instructions`` counts instead the CPU
instructions ``AnalyticsRunner.process`` executes per frame, under valgrind (cachegrind): a figure
the machine's load cannot move (runs of 50 and 350 frames, with and without ``process``, differenced,
so start-up and the synthetic scene are left out; about a minute per side). ``--against DIR`` runs the same scene, in
turns, on another checkout's ``agent`` package (e.g. ``git archive <commit> agent | tar -x -C DIR``)
and prints both side by side with their ratio.

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


#: code run first in a side's subprocess: it must have imported that side's ``agent``
_SAME_PKG = (
    "import os, agent; assert os.path.realpath(agent.__file__).startswith(os.path.realpath({0!r})), "
    "agent.__file__; "
)


def _p50_in(pkg_dir: str, n: int, frames: int, clock: str) -> float:
    """p50 of the same scene with the ``agent`` package of ``pkg_dir`` (a subprocess)."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=pkg_dir)
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys, json, statistics; sys.path.insert(0, {bench_dir!r}); import analytics_bench as b; "
        f"{_SAME_PKG.format(pkg_dir)}"
        f"b.time.perf_counter = b.time.thread_time if {clock!r} == 'cpu' else b.time.perf_counter; "
        f"print(json.dumps(statistics.median(b.run({n}, {frames})[50:])))"
    )
    # run in the package's folder: ``-c`` puts the working directory first on sys.path, so from the
    # repository's root both sides would otherwise import this checkout's ``agent``
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=pkg_dir, capture_output=True, text=True, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _instructions(pkg_dir: str, n: int, frames: int, process: bool) -> int:
    """CPU instructions of one run of the scene under cachegrind (``process`` off: the scene alone)."""
    import os
    import re
    import subprocess
    import sys

    bench_dir = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {bench_dir!r}); import analytics_bench as b; {_SAME_PKG.format(pkg_dir)}"
    if not process:
        code += "import agent.analytics.runner as R; R.AnalyticsRunner.process = lambda self, res: None; "
    code += f"b.run({n}, {frames})"
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    out = subprocess.run(
        [*cmd, sys.executable, "-c", code],
        # the package's own folder as the working directory: ``-c`` puts it first on sys.path;
        # one BLAS thread, whose spinning would make the count vary
        env=dict(os.environ, PYTHONPATH=pkg_dir, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1"),
        cwd=pkg_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    m = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if not m:
        raise SystemExit(
            f"error: no instruction count from valgrind\nfix: is valgrind installed?\n{out.stderr[-500:]}"
        )
    return int(m.group(1).replace(",", ""))


def per_frame_instructions(pkg_dir: str, n: int, short: int = 50, long: int = 350) -> float:
    """Instructions of ``AnalyticsRunner.process`` per frame with ``n`` objects (see the module)."""
    with_p = _instructions(pkg_dir, n, long, True) - _instructions(pkg_dir, n, short, True)
    scene = _instructions(pkg_dir, n, long, False) - _instructions(pkg_dir, n, short, False)
    return (with_p - scene) / (long - short)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--against", help="another checkout's folder holding agent/ (side-by-side run)")
    ap.add_argument("--rounds", type=int, default=3, help="turns each side runs with --against")
    ap.add_argument("--instructions", action="store_true", help="count instructions per frame under valgrind")
    args = ap.parse_args()
    if args.instructions:
        import os
        import shutil

        if not shutil.which("valgrind"):
            raise SystemExit("error: --instructions needs valgrind\nfix: apt-get install valgrind")
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for n in (10, 50):
            a = per_frame_instructions(here, n)
            line = f"{n:3d} objects: {a / 1e6:.2f} M instructions per frame (valgrind)"
            if args.against:
                b = per_frame_instructions(args.against, n)
                line += f", other {b / 1e6:.2f} M, ratio {a / b:.3f}"
            print(line)
        return
    if args.clock == "cpu":
        time.perf_counter = time.thread_time  # type: ignore[assignment]
    if args.against:
        import os

        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for n in (10, 50):
            a, b = [], []
            for _ in range(args.rounds):
                a.append(_p50_in(here, n, args.frames, args.clock))
                b.append(_p50_in(args.against, n, args.frames, args.clock))
            print(
                f"{n:3d} objects, p50 per frame ({args.clock}): this {statistics.median(a):.3f} ms, "
                f"other {statistics.median(b):.3f} ms, ratio {statistics.median(a) / statistics.median(b):.2f} "
                f"(rounds: {', '.join(f'{x:.2f}/{y:.2f}' for x, y in zip(a, b))})"
            )
        return
    for n in (10, 50):
        t = run(n, args.frames)[50:]
        print(
            f"{n:3d} objects: mean {statistics.fmean(t):.3f} ms  p50 {statistics.median(t):.3f} ms  "
            f"p95 {np.percentile(t, 95):.3f} ms per frame ({len(t)} frames, {args.clock} clock)"
        )


if __name__ == "__main__":
    main()
