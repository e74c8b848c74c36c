"""Start-up of the installed ``edge-agent`` (prints figures; not a timed test).

    .venv/bin/python benchmarks/startup.py [--runs 15]

Times ``edge-agent --help``, ``edge-agent --version`` and a bare ``python -c pass`` side by side, in
turns, and prints the medians, the agent's cost above a bare interpreter and the target (issue #15:
``--help`` within 0.3 s).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.3


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("edge-agent"))
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "--help": [exe, "--help"],
        "--version": [exe, "--version"],
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, cmd in cases.items():
            times[name].append(_time(cmd))
    base = statistics.median(times["python -c pass"])
    for name, ts in times.items():
        med = statistics.median(ts)
        extra = "" if name.startswith("python") else f"  (+{med - base:.3f} s over bare python)"
        print(f"{name:15s} median {med:.3f} s  min {min(ts):.3f} s  max {max(ts):.3f} s{extra}")
    med = statistics.median(times["--help"])
    print(
        f"target: edge-agent --help <= {TARGET_S} s: {'met' if med <= TARGET_S else 'MISSED'} ({med:.3f} s)"
    )


if __name__ == "__main__":
    main()
