"""Console commands check that the agent answering on api.port is the one their config names
(issue #16, item 6): two real agents' configs on one machine, one port, a random free one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from agent.store.db import Database
from agent.timefmt import iso_utc

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, name: str, port: int) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(
        f'[device]\nid = "{name}"\nsite = "site-a"\n\n[storage]\npath = "{tmp_path}/{name}.sqlite"\n\n'
        f'[api]\nport = {port}\nbind = "127.0.0.1"\n\n[mqtt]\nenabled = false\n'
    )
    return cfg


def test_readings_of_another_agent_on_the_same_port_are_not_shown(tmp_path):
    port = _free_port()
    cfg_a, cfg_b = _config(tmp_path, "unit-a", port), _config(tmp_path, "unit-b", port)
    db = Database(tmp_path / "unit-b.sqlite")  # unit-b is not running; its database holds a reading
    db.conn.execute(
        "INSERT INTO readings (ts, sensor, metric, value, unit) VALUES (?, 'pm', 'pm2_5', 42.5, 'ug/m3')",
        (iso_utc(time.time() - 60),),
    )
    db.close()
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_CONFIG"}
    agent_a = subprocess.Popen(
        [EDGE_AGENT, "run", "--config", str(cfg_a)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                break
            except OSError:
                assert agent_a.poll() is None, agent_a.stderr.read().decode()
                time.sleep(0.2)
        else:
            raise AssertionError("agent unit-a did not answer")
        r = subprocess.run(
            [EDGE_AGENT, "readings", "--config", str(cfg_b)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        assert "42.5" in out, out  # unit-b's own reading, from its database
        assert "unit-a" in out and "another agent" in out, out  # says why it did not ask the API
    finally:
        agent_a.terminate()
        agent_a.wait(30)
