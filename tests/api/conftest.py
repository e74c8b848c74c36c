"""Fixtures for the API tests: a real `edge-agent run` on a real clip (and a serial simulator),
reached on loopback only; free ports; the system Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, mirror_dir

ARTIFACTS = ROOT / "test-artifacts" / "api"
CHROMIUM = "/usr/bin/chromium"

TRAFFIC_CAMERA = """
[[cameras]]
name = "road"
source = "{clip}"
loop = true
realtime = false
detect_fps = 30
threshold = 0.3
[cameras.analytics]
tracker = {{high_threshold = 0.4, new_track_threshold = 0.45, low_threshold = 0.3, max_overlap = 0.5}}
lines = [{{name = "main", points = [[0, 450], [1280, 450]], anchor = "center", directions = ["toward", "away"], classes = ["car", "truck", "bus", "motorcycle"]}}]
zones = [{{name = "hard-shoulder", points = [[0.05, 0.7], [0.45, 0.7], [0.45, 0.97], [0.05, 0.97]]}}]
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(tmp: Path, port: int, body: str = "", api: str = "", privacy: str = "") -> Path:
    cfg = tmp / "agent.toml"
    cfg.write_text(f"""
[device]
id = "pole-7"
site = "main-st"
[storage]
path = "{tmp / "agent.sqlite"}"
stats_interval_s = 1.0
[models]
dir = "{tmp / "models"}"
mirror = "{mirror_dir()}"
[inference]
num_threads = 1
accelerator = "cpu"
[api]
port = {port}
page_refresh_s = 1.0
{api}
[privacy]
{privacy}
{body}
""")
    return cfg


class Agent:
    """`edge-agent run --config CFG` in a subprocess; HTTP only to 127.0.0.1."""

    def __init__(self, cfg: Path, port: int, tmp: Path) -> None:
        self.cfg, self.port, self.tmp = cfg, port, tmp
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(tmp / "agent.log", "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1", EDGE_AGENT_MIRROR=str(mirror_dir()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def get(
        self,
        path: str,
        token: str | None = None,
        method: str = "GET",
        headers: dict | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.base + path, method=method, headers=headers or {})
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def json(self, path: str, token: str | None = None) -> dict:
        code, _, body = self.get(path, token)
        assert code == 200, (path, code, body[:500])
        return json.loads(body)

    def wait_up(self, timeout: float = 60, token: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.read_log()
            try:
                code, _, _ = self.get("/healthz", token, timeout=2)
                if code in (200, 503, 401):
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError("API never answered:\n" + self.read_log())

    def wait_for(self, what, timeout: float = 60, step: float = 0.3):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.read_log()
            last = what()
            if last:
                return last
            time.sleep(step)
        raise AssertionError(f"timed out waiting; last value {last!r}\n" + self.read_log()[-3000:])

    def read_log(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.tmp / "agent.log").read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (Debian's package; no browser downloads)")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def start_simulator(tmp: Path) -> tuple[subprocess.Popen, Path]:
    link = tmp / "pms-link"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "simulate-serial",
            "--device",
            "pms5003",
            "--link",
            str(link),
            "--noise",
            "0.2",
            "--seed",
            "7",
            "--rate",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not link.exists():
        assert p.poll() is None, p.stderr.read()
        assert time.monotonic() < deadline, "simulator link never appeared"
        time.sleep(0.1)
    return p, link


@pytest.fixture(scope="module")
def live_agent(tmp_path_factory, media_path):
    """The agent on the 4ku motorway clip (looping), a counting line and a zone, plus a simulated
    PMS5003 on a pty; API on loopback (no token)."""
    tmp = tmp_path_factory.mktemp("live")
    sim, link = start_simulator(tmp)
    port = free_port()
    cfg = write_config(
        tmp,
        port,
        TRAFFIC_CAMERA.format(clip=media_path("4ku_traffic.mp4"))
        + f"""
[[sensors]]
name = "air"
driver = "pms5003"
port = "{link}"
warmup_s = 0
""",
    )
    agent = Agent(cfg, port, tmp)
    try:
        agent.wait_up()
        yield agent
    finally:
        agent.stop()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
        if os.environ.get("EDGE_AGENT_KEEP_LOGS"):
            shutil.copy(tmp / "agent.log", ARTIFACTS / "live-agent.log")
