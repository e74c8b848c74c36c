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


def test_replay_range_backwards_says_how_to_fix_it(tmp_path):
    from agent.store.db import Database

    db = tmp_path / "a.sqlite"
    Database(db).close()
    r = _run("outbox", "replay", "--db", str(db), "--from", "5", "--to", "2")
    _assert_clean(r, 1)
    assert "--from 2 --to 5" in r.stderr


def test_a_config_with_a_utf8_bom_is_read(tmp_path):
    cfg = tmp_path / "bom.toml"
    cfg.write_bytes(b'\xef\xbb\xbf[device]\nid = "unit-7"\n')
    r = _run("config", "check", str(cfg))
    assert r.returncode == 0 and "unit-7" in r.stdout, r.stdout + r.stderr


def test_tail_into_head_is_not_reported_as_the_agent_stopping(tmp_path):
    import time

    from agent.store.db import Database
    from agent.timefmt import iso_utc

    db = tmp_path / "a.sqlite"
    d = Database(db)
    d.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit) VALUES (?, 'pm', 'pm2_5', ?, 'ug/m3')",
        [(iso_utc(time.time() - 3000 + i), float(i)) for i in range(2000)],
    )
    d.close()
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[storage]\npath = "{db}"\n\n[api]\nport = {_free_port()}\n')
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_CONFIG"}
    p = subprocess.run(
        f"{EDGE_AGENT} tail --config {cfg} --lines 1000 --no-detections --duration 5 | head -n 3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert len(p.stdout.splitlines()) == 3
    assert "stopped answering" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_writer_last_error_is_cleared_once_writes_resume(tmp_path):
    """A real SQLITE_FULL (the file capped by max_page_count), then room again: the writer keeps the
    batch, commits it when space returns, and its last_error no longer shows the old disk-full error."""
    import time

    from agent.store.db import Database
    from agent.store.writer import Writer

    db = Database(tmp_path / "a.sqlite")
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    w = Writer(db, max_delay_s=0.01).start()
    try:
        rows = [
            {"ts": "2026-01-01T00:00:00.000Z", "sensor": "s", "metric": "m" * 200, "value": 1.0, "unit": ""}
        ] * 500
        assert w.submit_rows("readings", rows)
        deadline = time.monotonic() + 30
        while not w.disk_full and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.disk_full and "full" in (w.last_error or "")
        # room again (a per-connection setting: set on the writer's connection while it waits to retry)
        db.conn.execute("PRAGMA max_page_count = 1000000")
        assert w.flush(60)
        assert not w.disk_full and w.last_error is None, w.stats()
        assert w.committed_rows == 500
    finally:
        w.stop()
        db.close()


def test_classify_help_names_the_model_it_uses():
    from agent.inference.cli import DEFAULT_CLASSIFIER

    r = _run("classify", "--help")
    assert r.returncode == 0 and DEFAULT_CLASSIFIER in " ".join(r.stdout.split()), r.stdout


def test_hub_that_never_connects_exits_non_zero(tmp_path):
    r = _run(
        "hub",
        "--broker",
        f"mqtt://127.0.0.1:{_free_port()}",
        "--db",
        str(tmp_path / "hub.sqlite"),
        "--duration",
        "2",
        "--refresh",
        "0.5",
        "--json",
    )
    _assert_clean(r, 1)
    assert "never connected" in r.stderr


def test_hub_with_a_bad_broker_url_says_how_to_write_it(tmp_path):
    r = _run("hub", "--broker", "http://x", "--db", str(tmp_path / "hub.sqlite"), "--duration", "1")
    _assert_clean(r, 1)
    assert "mqtt://" in r.stderr
