"""Soak benchmark: does the agent's resident memory stay flat over hours? (issue #15)

    .venv/bin/python benchmarks/soak.py [--duration 3600] [--warmup 300] [--interval 10] [--json]

Runs the installed ``edge-agent run`` as a user would, with a config a user would write: one camera
on the mirror's 4ku motorway clip looping at ``detect_fps = 5`` in real time (a counting line, a
zone, a ground-plane calibration for speeds, a stopped-vehicle incident rule), a PMS5003 on a pty
from ``edge-agent simulate-serial``, MQTT to a mosquitto this script starts (own config and data
dir, random port, password auth) and the local API on a random port, polled every ``--poll``
seconds (status, a snapshot, counts). The agent's RSS (``/proc/PID/status`` VmRSS, and the anonymous
part from ``smaps_rollup``) is sampled every ``--interval`` seconds. After ``--warmup`` seconds a
least-squares line is fitted to the samples: its slope in MiB per hour is the figure, against the
target of < 0.5 MiB/h.

With tracemalloc on (default; ``--no-tracemalloc`` to measure RSS without its overhead) the agent
runs with ``EDGE_AGENT_TRACEMALLOC=1`` (agent/service/memtrace.py): SIGUSR2 half-way through the
warm-up takes the baseline (the snapshot it keeps adds ~20 MiB of RSS at once: that step stays out of
the fit), SIGUSR2 at the end lists the source lines that grew the most since. tracemalloc itself
costs memory per live block, so run ``--no-tracemalloc`` for the RSS figure.
Figures, not a pass/fail test (tests/ops/test_soak_short.py runs a short version for the harness).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sync.mosquitto import Mosquitto, free_port  # noqa: E402

TARGET_MIB_PER_H = 0.5
DEV, SITE = "pole-soak", "soak-st"
USERS = {DEV: "pw-soak", "hub": "pw-hub"}
STOP = threading.Event()  # SIGINT/SIGTERM: end the run early, still report what was measured
ERROR_RE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")

CONFIG = """\
[device]
id = "{dev}"
site = "{site}"

[storage]
path = "{db}"

[models]
dir = "{models}"
mirror = "{mirror}"

[inference]
num_threads = 1

[summary]
interval_s = 60

[api]
port = {api_port}

[mqtt]
enabled = true
host = "127.0.0.1"
port = {mqtt_port}
username = "{dev}"
password_file = "{pw}"

[[cameras]]
name = "road"
source = "{clip}"
loop = true
realtime = true
detect_fps = {fps}
[cameras.analytics]
lines = [{{name = "main", points = [[0, 450], [1280, 450]], directions = ["toward", "away"]}}]
zones = [{{name = "lanes", points = [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]]}}]
calibration = {{image_points = [[0.3, 0.45], [0.7, 0.45], [1.0, 1.0], [0.0, 1.0]], world_points = [[0.0, 60.0], [12.0, 60.0], [12.0, 0.0], [0.0, 0.0]]}}
incidents = [{{kind = "stopped_vehicle", name = "stopped", zone = "lanes"}}]

[[sensors]]
name = "pm"
driver = "pms5003"
port = "{pty}"
"""


def mirror_dir() -> Path:
    env = os.environ.get("EDGE_AGENT_MIRROR")
    p = Path(env) if env else ROOT.parent / "shared" / "assets"
    return (p if p.is_absolute() else (Path.cwd() / p)).resolve()


def edge_agent_exe() -> str:
    """The installed entry point: next to this interpreter (a venv), else on PATH."""
    cand = Path(sys.executable).parent / "edge-agent"
    if cand.exists():
        return str(cand)
    found = shutil.which("edge-agent")
    if not found:
        raise SystemExit("soak: `edge-agent` is not installed (pip install -e .)")
    return found


def read_rss(pid: int) -> tuple[float, float | None]:
    """(VmRSS, anonymous) in MiB."""
    rss = anon = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    anon = int(line.split()[1]) / 1024
    except OSError:
        pass
    if rss is None:
        raise OSError("no VmRSS")
    return rss, anon


def slope_per_hour(ts: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over ts (seconds), in units per hour."""
    n = len(ts)
    if n < 2:
        return None
    mt, my = sum(ts) / n, sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / sxx * 3600


class Poller(threading.Thread):
    """The API polled like a status page / technician would: status, a snapshot, counts."""

    def __init__(self, port: int, every_s: float) -> None:
        super().__init__(name="api-poller", daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.every_s = every_s
        self.ok = 0
        self.failed: list[str] = []
        self.stop_ev = threading.Event()

    def run(self) -> None:
        while not self.stop_ev.wait(self.every_s):
            for path in ("/api/status", "/api/snapshot/road.jpg?max_width=640", "/api/counts?since=1h"):
                try:
                    with urllib.request.urlopen(self.base + path, timeout=10) as r:
                        r.read()
                    self.ok += 1
                except Exception as exc:  # 503 before the first frame, a busy machine
                    self.failed.append(f"{path}: {exc}")


def wait_for(pred, timeout_s: float, step: float = 0.2) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def read_json(p: Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def soak(args: argparse.Namespace, work: Path, say) -> dict[str, Any]:
    mirror = mirror_dir()
    clip = Path(args.clip) if args.clip else mirror / "media" / "4ku_traffic.mp4"
    if not clip.exists():
        raise SystemExit(f"soak: clip {clip} not found (set EDGE_AGENT_MIRROR)")
    exe = edge_agent_exe()
    broker = Mosquitto(work / "broker", users=USERS, hub_users=["hub"]).start()
    pty = work / "ttyPMS"
    sim_log = open(work / "simulator.log", "w")
    sim = subprocess.Popen(
        [
            exe,
            "simulate-serial",
            "--device",
            "pms5003",
            "--link",
            str(pty),
            "--noise",
            "0.01",
            "--seed",
            "15",
        ],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
    )
    agent: subprocess.Popen | None = None
    poller: Poller | None = None
    growth_file = work / "tracemalloc.json"
    res: dict[str, Any] = {}
    try:
        if not wait_for(pty.exists, 15):
            raise SystemExit("soak: the simulator made no pty")
        pw = work / "mqtt.pass"
        pw.write_text(USERS[DEV] + "\n")
        api_port = free_port()
        cfg = work / "agent.toml"
        cfg.write_text(
            CONFIG.format(
                dev=DEV, site=SITE, db=work / "agent.sqlite", models=work / "models", mirror=mirror,
                api_port=api_port, mqtt_port=broker.port, pw=pw, clip=clip, fps=args.fps, pty=pty,
            )
        )  # fmt: skip
        env = dict(os.environ, EDGE_AGENT_MIRROR=str(mirror), PYTHONUNBUFFERED="1")
        env.pop("MALLOC_ARENA_MAX", None)  # as a unit runs it: the agent caps the arenas itself
        if args.tracemalloc:
            env.update(EDGE_AGENT_TRACEMALLOC="1", EDGE_AGENT_TRACEMALLOC_OUT=str(growth_file))
        agent_log = work / "agent.log"
        logf = open(agent_log, "w")
        t0 = time.monotonic()
        agent = subprocess.Popen(
            [exe, "run", "--config", str(cfg)], stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=work
        )
        say(f"agent pid {agent.pid}, API :{api_port}, mosquitto :{broker.port}, work dir {work}")
        poller = Poller(api_port, args.poll)
        poller.start()
        samples: list[tuple[float, float, float | None]] = []
        baseline_sent = False
        next_t = 0.0
        while True:
            el = time.monotonic() - t0
            if el >= args.duration or agent.poll() is not None or STOP.is_set():
                break
            if el >= next_t:
                rss, anon = read_rss(agent.pid)
                samples.append((el, rss, anon))
                next_t += args.interval
                if args.progress and len(samples) % max(1, int(60 / args.interval)) == 0:
                    say(f"  {el / 60:5.1f} min  RSS {rss:6.1f} MiB  anon {anon or 0:6.1f} MiB")
            # the baseline snapshot costs ~20 MiB of RSS for good: taken half-way through the
            # warm-up, that step stays out of the fitted samples
            if args.tracemalloc and not baseline_sent and el >= args.warmup / 2:
                agent.send_signal(signal.SIGUSR2)
                baseline_sent = True
            time.sleep(min(0.5, max(0.05, next_t - el)))
        growth = None
        if args.tracemalloc and baseline_sent and agent.poll() is None:
            wait_for(lambda: (read_json(growth_file) or {}).get("kind") == "baseline", 60)
            agent.send_signal(signal.SIGUSR2)
            wait_for(lambda: (read_json(growth_file) or {}).get("kind") == "growth", 120)
            growth = read_json(growth_file)
        early_exit = agent.poll()
        poller.stop_ev.set()
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        try:
            rc = agent.wait(90)
        except subprocess.TimeoutExpired:
            agent.kill()
            rc = agent.wait(10)
        logf.close()
        after = [(t, r, a) for t, r, a in samples if t >= args.warmup]
        log_lines = agent_log.read_text(errors="replace").splitlines()
        errors = [ln for ln in log_lines if ERROR_RE.search(ln)]
        slope = slope_per_hour([s[0] for s in after], [s[1] for s in after])
        anon_pts = [(t, a) for t, _r, a in after if a is not None]
        anon_slope = slope_per_hour([p[0] for p in anon_pts], [p[1] for p in anon_pts])
        half = len(after) // 2
        res = {
            "duration_s": round(samples[-1][0], 1) if samples else 0.0,
            "warmup_s": args.warmup,
            "interval_s": args.interval,
            "fps": args.fps,
            "tracemalloc": args.tracemalloc,
            "samples": len(samples),
            "samples_after_warmup": len(after),
            "rss_start_mib": _first_after(samples, min(30.0, args.warmup)),
            "rss_warm_mib": round(after[0][1], 1) if after else None,
            "rss_end_mib": round(samples[-1][1], 1) if samples else None,
            "rss_min_after_warmup_mib": round(min(s[1] for s in after), 1) if after else None,
            "rss_max_after_warmup_mib": round(max(s[1] for s in after), 1) if after else None,
            "slope_mib_per_h": None if slope is None else round(slope, 3),
            "slope_first_half_mib_per_h": _round(slope_per_hour([s[0] for s in after[:half]], [s[1] for s in after[:half]])),
            "slope_second_half_mib_per_h": _round(slope_per_hour([s[0] for s in after[half:]], [s[1] for s in after[half:]])),
            "anon_slope_mib_per_h": _round(anon_slope),
            "target_mib_per_h": TARGET_MIB_PER_H,
            "met": slope is not None and slope < TARGET_MIB_PER_H,
            "tracemalloc_growth": growth,
            "api_polls_ok": poller.ok,
            "api_polls_failed": len(poller.failed),
            "api_failures": poller.failed[:5],
            "agent_exit": rc,
            "agent_exited_early": early_exit is not None,
            "stopped_early": STOP.is_set(),
            "error_lines": errors[:20],
            "samples_mib": [[round(t, 1), round(r, 2), None if a is None else round(a, 2)] for t, r, a in samples],
            "work_dir": str(work),
        }  # fmt: skip
    finally:
        if poller is not None:
            poller.stop_ev.set()
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait(10)
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait(5)
        sim_log.close()
        broker.close()
    return res


def _first_after(samples: list[tuple[float, float, float | None]], t: float) -> float | None:
    """RSS of the first sample at or after ``t`` seconds (the agent is up; not the bare interpreter)."""
    return next((round(r, 1) for ts, r, _a in samples if ts >= t), None)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def print_report(r: dict[str, Any]) -> None:
    s = r["slope_mib_per_h"]
    print(
        f"soak: {r['duration_s'] / 60:.1f} min at {r['fps']:g} fps, warm-up {r['warmup_s'] / 60:.1f} min, "
        f"{r['samples']} samples ({r['samples_after_warmup']} after warm-up), tracemalloc "
        f"{'on' if r['tracemalloc'] else 'off'}"
    )
    print(
        f"  RSS: at 30 s {r['rss_start_mib']} MiB, after warm-up {r['rss_warm_mib']} MiB, end {r['rss_end_mib']} MiB "
        f"(after warm-up {r['rss_min_after_warmup_mib']}–{r['rss_max_after_warmup_mib']} MiB)"
    )
    verdict = "n/a" if s is None else ("met" if r["met"] else "MISSED")
    print(
        f"  RSS slope after warm-up: {s} MiB/h (halves {r['slope_first_half_mib_per_h']} / "
        f"{r['slope_second_half_mib_per_h']}; anonymous {r['anon_slope_mib_per_h']}) "
        f"target < {r['target_mib_per_h']} MiB/h: {verdict}"
    )
    g = r.get("tracemalloc_growth")
    if g:
        print(
            f"  tracemalloc: {g['traced_mib']} MiB traced, {g['total_diff_kib']:+.1f} KiB over "
            f"{g['since_baseline_s']:.0f} s since the baseline; top growers:"
        )
        for x in g["growers"][:10]:
            print(f"    {x['size_diff_kib']:+9.1f} KiB {x['count_diff']:+7d} blocks  {x['where']}")
    elif r["tracemalloc"]:
        print("  tracemalloc: no growth report (run shorter than the warm-up?)")
    print(
        f"  API polls ok {r['api_polls_ok']}, failed {r['api_polls_failed']}; agent exit {r['agent_exit']}; "
        f"{len(r['error_lines'])} error line(s) in its log"
    )
    for ln in r["error_lines"][:5]:
        print(f"    {ln[:200]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=3600, help="Seconds the agent runs (default 3600).")
    ap.add_argument("--warmup", type=float, default=300, help="Seconds left out of the fit (default 300).")
    ap.add_argument("--interval", type=float, default=10, help="Seconds between RSS samples (default 10).")
    ap.add_argument("--poll", type=float, default=15, help="Seconds between API polls (default 15).")
    ap.add_argument("--fps", type=float, default=5, help="Camera detect_fps (default 5).")
    ap.add_argument("--clip", help="Video file (default: the mirror's 4ku_traffic.mp4).")
    ap.add_argument(
        "--no-tracemalloc", dest="tracemalloc", action="store_false", help="RSS without tracemalloc."
    )
    ap.add_argument("--workdir", help="Keep the run's files here (default: a temporary directory, removed).")
    ap.add_argument("--progress", action="store_true", help="Print RSS once a minute.")
    ap.add_argument("--json", action="store_true", help="One JSON object (with every sample).")
    args = ap.parse_args(argv)
    if args.warmup >= args.duration:
        ap.error("--warmup must be shorter than --duration")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: STOP.set())
    if args.workdir:
        work = Path(args.workdir).resolve()
        work.mkdir(parents=True, exist_ok=True)
        r = soak(args, work, say)
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as d:
            r = soak(args, Path(d), say)
    if args.json:
        print(json.dumps(r))
    else:
        print_report(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
