"""SIGHUP moves a counting line without losing counts; sd_notify READY/WATCHDOG/STOPPING from `run`."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, mirror_dir


def _config(tmp_path: Path, clip: Path, line_x: float) -> str:
    return f"""
[device]
id = "hup-unit"
[storage]
path = "{tmp_path / "agent.sqlite"}"
[models]
dir = "{tmp_path / "models"}"
mirror = "{mirror_dir()}"
[inference]
num_threads = 1
accelerator = "cpu"
[api]
enabled = false

[[cameras]]
name = "road"
source = "{clip}"
loop = true
realtime = true
detect_fps = 30
threshold = 0.3

[[cameras.analytics.lines]]
name = "main"
points = [[{line_x}, 0.0], [{line_x}, 1.0]]
directions = ["leftward", "rightward"]
"""


def _crossings(db: Path) -> list[tuple[float, str]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT x, direction FROM crossings ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []


def _wait(pred, timeout: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


def test_sighup_moves_a_counting_line_and_keeps_counts(tmp_path, media_path):
    clip = media_path("traffic_frames.mp4")  # 960 px wide, traffic moves right to left
    cfg = tmp_path / "agent.toml"
    cfg.write_text(_config(tmp_path, clip, 0.5))
    db = tmp_path / "agent.sqlite"
    p = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: len(_crossings(db)) >= 2, 90, p)
        before = _crossings(db)
        assert all(abs(x - 480) < 1 for x, _ in before)  # the line at x = 0.5 * 960
        cfg.write_text(_config(tmp_path, clip, 0.3))
        p.send_signal(signal.SIGHUP)
        _wait(lambda: any(abs(x - 288) < 1 for x, _ in _crossings(db)), 90, p)
        assert p.poll() is None  # still running: reloaded, not restarted
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-3000:]
    after = _crossings(db)
    assert after[: len(before)] == before  # counts already made are kept
    assert any(abs(x - 288) < 1 for x, _ in after)
    assert "reloaded config (updated: road)" in err


def test_sighup_with_a_broken_config_keeps_running(tmp_path, media_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(_config(tmp_path, media_path("traffic_frames.mp4"), 0.5))
    p = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg), "--duration", "6"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.5)
    cfg.write_text(cfg.read_text().replace("detect_fps = 30", "detect_fps = -1"))
    p.send_signal(signal.SIGHUP)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0
    assert "config not reloaded" in err and "cameras[0].detect_fps: -1 is not > 0" in err
    assert "camera road:" in out


def test_sd_notify_ready_watchdog_stopping(tmp_path, media_path):
    sock_path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(sock_path)
    srv.settimeout(0.5)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(_config(tmp_path, media_path("traffic_frames.mp4"), 0.5))
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="2000000", PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    env.pop("WATCHDOG_USEC")
    msgs: list[str] = []
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and sum("WATCHDOG=1" in m for m in msgs) < 3:
            try:
                msgs.append(srv.recv(4096).decode())
            except TimeoutError:
                assert p.poll() is None, p.communicate()[1][-2000:]
        p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 30
        while time.monotonic() < end and not any("STOPPING=1" in m for m in msgs):
            try:
                msgs.append(srv.recv(4096).decode())
            except TimeoutError:
                if p.poll() is not None:
                    break
        p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        srv.close()
    joined = "\n".join(msgs)
    ready_at = next(i for i, m in enumerate(msgs) if "READY=1" in m)
    first_ping = next(i for i, m in enumerate(msgs) if "WATCHDOG=1" in m)
    assert ready_at <= first_ping
    assert "STATUS=running: 1 camera(s)" in joined
    assert "STOPPING=1" in joined
    assert p.returncode == 0
