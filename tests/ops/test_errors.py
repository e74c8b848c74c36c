"""Errors an installer or technician meets get `error:` / `fix:` and the documented exit code, never a
traceback (issue #16, items 3 and 9): the installed `edge-agent` on real files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_CONFIG"}
    e.update(env or {})
    return subprocess.run([EDGE_AGENT, *args], capture_output=True, text=True, timeout=timeout, env=e)


def _assert_clean(r: subprocess.CompletedProcess, code: int) -> None:
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    assert r.returncode == code, (r.returncode, out)
    assert "error:" in r.stderr and "fix:" in r.stderr, r.stderr


@pytest.fixture
def corrupt_config(tmp_path) -> Path:
    db = tmp_path / "agent.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))  # a header, then garbage
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[storage]\npath = "{db}"\n\n[api]\nport = {_free_port()}\n')  # no agent answers there
    return cfg


@pytest.mark.parametrize(
    "command", [["status"], ["counts"], ["readings"], ["outbox", "status"], ["outbox", "list"], ["tail"]]
)
def test_console_commands_on_a_corrupt_database(corrupt_config, command):
    r = _run(*command, "--config", str(corrupt_config))
    _assert_clean(r, 5)
    assert "mv " in r.stderr  # the fix names the move-aside


def test_run_with_a_file_where_the_database_directory_should_be(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path}/afile/sub/agent.sqlite"\n\n[api]\nenabled = false\n')
    r = _run("run", "--config", str(cfg), "--duration", "1")
    _assert_clean(r, 5)
    assert "a file is in the way" in r.stderr


def test_run_without_permission_for_the_database_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere: the permission case needs an unprivileged user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[storage]\npath = "{locked}/sub/agent.sqlite"\n\n[api]\nenabled = false\n')
    r = _run("run", "--config", str(cfg), "--duration", "1")
    _assert_clean(r, 5)


def test_run_without_config_uses_the_environment_and_says_so(tmp_path):
    db = tmp_path / "env-agent.sqlite"
    cfg = tmp_path / "env.toml"
    cfg.write_text(f'[storage]\npath = "{db}"\n\n[api]\nenabled = false\n')
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = subprocess.run(
        [EDGE_AGENT, "run", "--duration", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "EDGE_AGENT_CONFIG": str(cfg)},
    )
    assert r.returncode == 0, r.stderr
    assert f"config: {cfg}" in r.stderr
    assert "warning: nothing to do" in r.stderr and "fix:" in r.stderr
    assert db.exists() and not (cwd / "var").exists()  # the config's database, not ./var
