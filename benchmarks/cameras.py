"""Pipeline cost with 1, 2 and 4 file cameras on one model (issue #15 item 5).

    .venv/bin/python benchmarks/cameras.py [--cameras 1,2,4] [--frames 150] [--runs 3] [--json]

As a user would: writes a config with N ``[[cameras]]`` reading the mirror's 4ku clip (cut to its
first ``--frames`` frames, ``realtime = false``, no loop), MQTT off, and runs the installed
``edge-agent run --config FILE``, which ends by itself when the files end. Per run it prints the
frames the agent says it inferred (its end-of-run report, summed over cameras), the process's wall
time, total and per-camera fps, CPU seconds per frame (the child's user+system time / frames) and
peak RSS. Each N is also run on a ``--baseline-frames`` cut of the clip, and the figures are the
difference of the two runs: the cost of the frames alone, without the agent's start and stop (model
load, database, report), which are the same whatever the clip's length. Ratios (total fps at N / at
1, CPU per frame at N / at 1) are taken within one sweep, side by side, since the machine is noisy;
the spread is over ``--runs`` sweeps. Target: CPU per frame at 4 cameras no more than 1.25x that at
1 (one shared model).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.soak import edge_agent_exe, mirror_dir  # noqa: E402
from tests.sync.mosquitto import free_port  # noqa: E402

TARGET_CPU_RATIO = 1.25

CAMERA = """
[[cameras]]
name = "cam{i}"
source = "{clip}"
loop = false
realtime = false
detect_fps = 30  # every frame of the 25 fps clip (the default, 5, infers one in five)
"""

CONFIG = """\
[device]
id = "pole-cost"
site = "cost-st"

[storage]
path = "{db}"

[models]
dir = "{models}"
mirror = "{mirror}"

[api]
port = {api_port}

[mqtt]
enabled = false
"""


def cut_clip(src: Path, dst: Path, frames: int) -> int:
    import cv2

    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    out = None
    n = 0
    while n < frames:
        ok, img = cap.read()
        if not ok:
            break
        if out is None:
            h, w = img.shape[:2]
            out = cv2.VideoWriter(str(dst), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        out.write(img)
        n += 1
    cap.release()
    if out is not None:
        out.release()
    return n


def run_once(work: Path, clip: Path, n_cams: int, frames: int) -> dict[str, Any]:
    mirror = mirror_dir()
    d = work / f"n{n_cams}-{time.monotonic_ns()}"
    d.mkdir()
    cfg = d / "agent.toml"
    text = CONFIG.format(db=d / "agent.sqlite", models=work / "models", mirror=mirror, api_port=free_port())
    text += "".join(CAMERA.format(i=i, clip=clip) for i in range(n_cams))
    cfg.write_text(text)
    env = dict(os.environ, EDGE_AGENT_MIRROR=str(mirror))
    log = open(d / "agent.log", "w")
    t0 = time.monotonic()
    p = subprocess.Popen(
        [edge_agent_exe(), "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if p.returncode != 0:
        raise SystemExit(
            f"cameras: edge-agent run exited {p.returncode}; see {d / 'agent.log'}:\n"
            + (d / "agent.log").read_text()[-2000:]
        )
    inferred = sum(int(n.replace(",", "")) for n in INFERRED.findall((d / "agent.log").read_text()))
    return {
        "frames": inferred,
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "rss_mib": ru.ru_maxrss / 1024,
    }


INFERRED = re.compile(r"camera cam\d+: \w+, ([\d,]+) frames inferred")


def marginal(n_cams: int, full: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The frames' own cost: the full run less the baseline run (same N, same start and stop)."""
    frames = full["frames"] - base["frames"]
    wall = max(1e-6, full["wall_s"] - base["wall_s"])
    cpu = max(0.0, full["cpu_s"] - base["cpu_s"])
    return {
        "cameras": n_cams,
        "frames": frames,
        "wall_s": round(wall, 3),
        "fps_total": round(frames / wall, 2),
        "fps_per_camera": round(frames / n_cams / wall, 2),
        "cpu_s_per_frame": round(cpu / max(1, frames), 5),
        "rss_mib": round(full["rss_mib"], 1),
        "startup_wall_s": round(base["wall_s"], 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", default="1,2,4", help="Camera counts, comma-separated (default 1,2,4).")
    ap.add_argument("--frames", type=int, default=150, help="Frames of the clip per camera (default 150).")
    ap.add_argument("--runs", type=int, default=3, help="Sweeps (default 3).")
    ap.add_argument(
        "--baseline-frames", type=int, default=10, help="Frames of the baseline run, subtracted (default 10)."
    )
    ap.add_argument("--clip", help="Video file (default: the mirror's 4ku_traffic.mp4).")
    ap.add_argument("--json", action="store_true", help="One JSON object.")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.cameras.split(",")]
    src = Path(args.clip) if args.clip else mirror_dir() / "media" / "4ku_traffic.mp4"
    if not src.exists():
        raise SystemExit(
            f"error: clip {src} not found\nfix: set EDGE_AGENT_MIRROR to the assets folder or pass --clip"
        )
    with tempfile.TemporaryDirectory(prefix="cost-cams-") as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        frames = cut_clip(src, clip, args.frames)
        short = work / "short.mp4"
        cut_clip(src, short, args.baseline_frames)
        run_once(work, short, 1, args.baseline_frames)  # warm-up, not counted: fetches the model
        sweeps = []
        for r in range(args.runs):
            rows = []
            for n in counts:
                base = run_once(work, short, n, args.baseline_frames)
                full = run_once(work, clip, n, frames)
                if full["frames"] != n * frames:
                    raise SystemExit(f"error: {n} camera(s) inferred {full['frames']} of {n * frames} frames")
                rows.append(marginal(n, full, base))
            base = rows[0]
            for row in rows:
                row["fps_ratio"] = round(row["fps_total"] / base["fps_total"], 3)
                if base["cpu_s_per_frame"] <= 0:  # the frames' CPU was lost in the start-up's noise
                    raise SystemExit(
                        "error: the 1-camera run's CPU above its baseline was 0 (too few frames for this load)\n"
                        "fix: give more --frames (or fewer --baseline-frames)"
                    )
                row["cpu_ratio"] = round(row["cpu_s_per_frame"] / base["cpu_s_per_frame"], 3)
            sweeps.append(rows)
            if not args.json:
                for row in rows:
                    print(f"run {r + 1}: " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    summary: list[dict[str, Any]] = []
    for i, n in enumerate(counts):
        col = [s[i] for s in sweeps]
        med = {
            k: statistics.median(c[k] for c in col)
            for k in ("fps_total", "fps_per_camera", "cpu_s_per_frame", "rss_mib", "fps_ratio", "cpu_ratio")
        }
        spread = {k: [min(c[k] for c in col), max(c[k] for c in col)] for k in ("fps_total", "cpu_ratio")}
        summary.append({"cameras": n, "median": med, "spread": spread})
    result = {
        "frames_per_camera": frames,
        "runs": args.runs,
        "sweeps": sweeps,
        "summary": summary,
        "target_cpu_ratio": TARGET_CPU_RATIO,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"target: CPU per frame at {counts[-1]} cameras <= {TARGET_CPU_RATIO}x that at {counts[0]}")
        for s in summary:
            m, sp = s["median"], s["spread"]
            print(
                f"{s['cameras']} camera(s): total {m['fps_total']} fps (range {sp['fps_total'][0]}-{sp['fps_total'][1]}), "
                f"{m['fps_per_camera']} fps/camera, {m['cpu_s_per_frame']} CPU s/frame, RSS {m['rss_mib']} MiB, "
                f"fps x{m['fps_ratio']}, CPU/frame x{m['cpu_ratio']} (range {sp['cpu_ratio'][0]}-{sp['cpu_ratio'][1]})"
            )
    return result


if __name__ == "__main__":
    main()
