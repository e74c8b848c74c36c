"""sd_notify over a real unix datagram socket: the module, and a real process using it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.service import notify

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@pytest.fixture
def sock(tmp_path, monkeypatch):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    s.bind(str(path))
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


def recv(s: socket.socket) -> dict[str, str]:
    data = s.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_noop_without_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready("x") is False
    assert notify.watchdog() is False


def test_fields_are_sent(sock):
    assert notify.ready("pipeline running")
    assert recv(sock) == {"READY": "1", "STATUS": "pipeline running"}
    assert notify.status("two\nlines")
    assert recv(sock) == {"STATUS": "two lines"}
    assert notify.stopping()
    assert recv(sock) == {"STOPPING": "1"}
    assert notify.extend_timeout(90)
    assert recv(sock) == {"EXTEND_TIMEOUT_USEC": "90000000"}


def test_abstract_namespace(monkeypatch):
    name = f"edge-agent-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        assert notify.watchdog()
        assert recv(s) == {"WATCHDOG": "1"}
    finally:
        s.close()


def test_unreachable_socket_does_not_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert notify.status("x") is False


def test_watchdog_interval_env(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert notify.watchdog_interval() is None
    assert notify.Watchdog({}).start() is False


def test_watchdog_pings_only_when_all_probes_are_fresh(sock):
    now = [100.0]
    last = {"camera:north": 100.0, "db-writer": 100.0}
    wd = notify.Watchdog({k: (lambda k=k: last[k]) for k in last}, interval_s=10, clock=lambda: now[0])
    assert wd.tick() is True
    assert recv(sock) == {"WATCHDOG": "1"}
    now[0] = 115.0
    last["db-writer"] = 114.0
    assert wd.check() == [("camera:north", 15.0)]
    assert wd.tick() is False
    msg = recv(sock)
    assert "WATCHDOG" not in msg and msg["STATUS"] == "stalled: camera:north (no progress for 15s)"
    last["camera:north"] = 115.0
    notify.status("running: 1 camera")
    recv(sock)
    assert wd.tick() is True
    assert recv(sock) == {"WATCHDOG": "1", "STATUS": "running: 1 camera"}  # status restored after recovery


def test_probes_added_removed_and_failing(sock):
    now = [0.0]
    wd = notify.Watchdog({}, interval_s=4, clock=lambda: now[0])
    wd.add_probe("mqtt", lambda: None)  # no progress yet: counts from when added
    now[0] = 3.0
    assert wd.check() == []
    now[0] = 5.0
    assert wd.check() == [("mqtt", 5.0)]
    wd.remove_probe("mqtt")
    wd.add_probe("inference", lambda: 1 / 0)  # a broken probe is a stall, not a crash
    assert wd.check() == [("inference", None)]
    assert wd.probe_names == ["inference"]
    with pytest.raises(ValueError):
        notify.Watchdog({}, interval_s=0)


def test_real_process_ready_watchdog_stall_and_stopping(sock, tmp_path):
    env = dict(os.environ, NOTIFY_SOCKET=sock.getsockname(), WATCHDOG_USEC="400000", PYTHONPATH=str(ROOT))
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "notify_child.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        msgs: list[dict[str, str]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("WATCHDOG" in m for m in msgs) < 3:
            msgs.append(recv(sock))
        assert {"READY": "1", "STATUS": "running: 1 camera"} in msgs
        assert sum("WATCHDOG" in m for m in msgs) >= 3, msgs

        proc.send_signal(signal.SIGUSR1)  # stall camera:north on purpose
        msg = recv(sock)
        while "stalled" not in msg.get("STATUS", ""):
            msg = recv(sock)
        assert msg["STATUS"].startswith("stalled: camera:north (no progress for")
        assert "inference" not in msg["STATUS"]
        # for several watchdog intervals: status reports, but never a ping
        sock.settimeout(0.3)
        after: list[dict[str, str]] = []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            try:
                after.append(recv(sock))
            except TimeoutError:
                pass
        assert after and not any("WATCHDOG" in m for m in after), after
        sock.settimeout(2)

        proc.send_signal(signal.SIGTERM)
        msg = recv(sock)
        while "STOPPING" not in msg:
            msg = recv(sock)
        assert msg == {"STOPPING": "1", "STATUS": "stopping (SIGTERM)"}
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "clean exit" in out
        assert "stalled thread(s): camera:north" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
