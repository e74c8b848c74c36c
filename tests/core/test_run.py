"""`edge-agent run` end to end: real clip, real model, real SQLite; SIGTERM loses nothing."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, mirror_dir


def _write_config(tmp_path: Path, cameras: str, extra: str = "") -> Path:
    models_dir = tmp_path / "models"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
[device]
id = "test-unit"
site = "lab"
[storage]
path = "{tmp_path / "agent.sqlite"}"
stats_interval_s = 1.0
[models]
dir = "{models_dir}"
mirror = "{mirror_dir()}"
[inference]
num_threads = 1
accelerator = "cpu"
[api]
enabled = false
{extra}
{cameras}
""")
    return cfg


def _start(cfg: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _count(db: Path, sql: str) -> int:
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                return c.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:
            time.sleep(0.1)
    raise AssertionError("database never became readable")


def test_run_on_looping_clip_then_sigterm_commits_every_accepted_detection(tmp_path, media_path):
    clip = media_path("traffic_frames.mp4")
    cfg = _write_config(
        tmp_path,
        f"""
[[cameras]]
name = "road"
source = "{clip}"
loop = true
realtime = false
detect_fps = 30
""",
    )
    db = tmp_path / "agent.sqlite"
    p = _start(cfg)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if db.exists() and _count(db, "SELECT count(*) FROM detections") > 60:
                break
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.3)
        p.send_signal(signal.SIGTERM)  # mid-stream: frames in flight, rows queued in the writer
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "stopping (SIGTERM)" in err
    accepted = int(re.search(r"detections: accepted (\d+)", out).group(1))
    stored = _count(db, "SELECT count(*) FROM detections")
    assert accepted > 60 and stored == accepted  # every accepted detection is committed
    assert _count(db, "SELECT count(*) FROM detections WHERE label = 'car'") > 0
    assert _count(db, "SELECT count(*) FROM inference_stats WHERE camera = 'road'") >= 1
    assert "dropped 0, failed 0" in out


def test_bad_camera_and_bad_model_do_not_stop_the_agent(tmp_path, media_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(os.urandom(4096))
    cfg = _write_config(
        tmp_path,
        f"""
[[cameras]]
name = "road"
source = "{media_path("traffic_frames.mp4")}"
realtime = false
detect_fps = 30

[[cameras]]
name = "gate"
source = "rtsp://127.0.0.1:{port}/live"
reconnect_initial_s = 0.1
reconnect_max_s = 0.3

[[cameras]]
name = "side"
source = "{media_path("traffic_frames.mp4")}"
model = "{corrupt}"
""",
    )
    p = _start(cfg, "--duration", "8")
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err
    assert re.search(r"camera road: \w+, 20 frames inferred", out), out
    assert re.search(
        r"camera gate: (down|reconnecting|stopped), 0 frames inferred, last error: cannot open", out
    ), out
    assert "camera side:" in out and "unavailable" in out and str(corrupt.name) in out
    assert "Traceback" not in err
    assert _count(tmp_path / "agent.sqlite", "SELECT count(*) FROM detections WHERE camera='road'") > 0


def test_a_sigterm_after_the_run_has_ended_is_not_a_death(tmp_path):
    """A run that ended by itself (a file, --duration) keeps its handlers while it prints its report
    and exits: a service manager's SIGTERM in that window is "already stopping", not a kill -15.
    In-process callers (the default) get their own handlers back."""
    cfg = _write_config(tmp_path, "")
    code = f"""
import os, signal, time
from agent.config import load_config
from agent.runner import run_agent
cfg = load_config({str(cfg)!r})
def mine(*_):
    print("caller's handler")
signal.signal(signal.SIGTERM, mine)
run_agent(cfg, duration_s=0.2)
assert signal.getsignal(signal.SIGTERM) is mine, "the default restores the caller's handler"
run_agent(cfg, duration_s=0.2, restore_signals=False)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("alive after SIGTERM")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "alive after SIGTERM" in r.stdout and "caller's handler" not in r.stdout
    assert "SIGTERM again: already stopping" in r.stderr


def test_after_its_report_run_ignores_sigterm_through_the_interpreter_exit(tmp_path):
    """Python resets its own signal handlers to the default while it shuts down; an ignored signal
    stays ignored. So once `run` has committed everything, SIGTERM/SIGINT are set to SIG_IGN: a
    service manager's SIGTERM during the exit cannot turn a clean exit into a death by signal."""
    cfg = _write_config(tmp_path, "")
    code = f"""
import os, signal
from agent.cli import cli
cli.main(["run", "--config", {str(cfg)!r}, "--duration", "0.2"], prog_name="edge-agent", standalone_mode=False)
print("ignored:", signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
os.kill(os.getpid(), signal.SIGTERM)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "ignored: True True" in r.stdout
