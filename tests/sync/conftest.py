"""Fixtures for sync tests: a real mosquitto (TLS, passwords, ACL), agents in-process or as processes, a hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, parse_config
from agent.hub.worker import Hub
from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync.service import SyncService
from tests.sync.mosquitto import Certs, Mosquitto, make_certs

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"
USERS = {"unit-1": "pw-unit-1", "unit-2": "pw-unit-2", "hub": "pw-hub"}


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker(tmp_path, certs):
    b = Mosquitto(tmp_path / "broker", users=USERS, hub_users=["hub"], certs=certs).start()
    yield b
    b.close()


def _deep_update(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def agent_config(
    tmp_path: Path, broker: Mosquitto | None, device: str = "unit-1", **over: Any
) -> dict[str, Any]:
    """A config dict for a sync test agent (short intervals, fast backoff, no backfill cap)."""
    pw = tmp_path / f"{device}.pass"
    pw.write_text(USERS.get(device, "nope") + "\n")
    cfg: dict[str, Any] = {
        "device": {"id": device, "site": "site-a"},
        "storage": {"path": str(tmp_path / f"{device}.sqlite"), "commit_interval_s": 0.05},
        "mqtt": {
            "enabled": broker is not None,
            "host": "127.0.0.1",
            "port": broker.port if broker else 1883,
            "username": device,
            "password_file": str(pw),
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
            "keepalive_s": 5,
            "backfill_rate_per_s": 0,
            "health_interval_s": 3600,
            "connect_timeout_s": 3,
        },
        "summary": {"interval_s": 0.5, "flush_timeout_s": 2.0},
        "logging": {"level": "info"},
    }
    return _deep_update(cfg, over)


def to_toml(d: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for our config dicts (tables of scalars and lists of scalars)."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(str(v))

    scalars = [f"{k} = {val(v)}" for k, v in d.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{prefix + k}]\n" + to_toml(v, prefix + k + ".") for k, v in d.items() if isinstance(v, dict)
    ]
    return "\n".join(scalars) + "\n" + "".join(tables)


class InProcessAgent:
    """Database + Writer + SyncService in this process (the same objects `edge-agent run` wires)."""

    def __init__(self, cfg: dict[str, Any], status=None, retention_interval_s: float = 30.0) -> None:
        self.cfg: AgentConfig = parse_config(cfg)
        self.db_path = self.cfg.storage.path
        self.database = Database(self.db_path)
        self.writer = Writer(self.database, max_delay_s=self.cfg.storage.commit_interval_s).start()
        self.svc = SyncService(
            self.cfg, self.db_path, self.writer, status=status, retention_interval_s=retention_interval_s
        )

    def start(self) -> InProcessAgent:
        self.svc.start()
        return self

    def stop(self, deadline_s: float = 5.0) -> None:
        self.svc.stop(deadline_s)
        self.writer.stop()
        self.database.close()


@pytest.fixture
def agents():
    started: list[InProcessAgent] = []

    def make(cfg: dict[str, Any], **kw: Any) -> InProcessAgent:
        a = InProcessAgent(cfg, **kw)
        started.append(a)
        return a

    yield make
    for a in started:
        try:
            a.stop(2.0)
        except Exception:  # noqa: BLE001 - already stopped
            pass


class AgentProcess:
    """`python -m agent.sync --config FILE` as a child process (killable with SIGKILL)."""

    def __init__(self, tmp_path: Path, cfg: dict[str, Any], name: str = "agent") -> None:
        self.config = tmp_path / f"{name}.toml"
        self.config.write_text(to_toml(cfg))
        self.log = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> AgentProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.sync", "--config", str(self.config)],
            cwd=ROOT,
            env=env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def agent_procs():
    procs: list[AgentProcess] = []

    def make(tmp_path: Path, cfg: dict[str, Any], name: str = "agent") -> AgentProcess:
        p = AgentProcess(tmp_path, cfg, name)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.kill()


@pytest.fixture
def hub(tmp_path, broker):
    h = Hub(
        broker.url,
        "city/#",
        tmp_path / "hub.sqlite",
        username="hub",
        password=USERS["hub"],
        gap_grace_s=1.0,
        replay_retry_s=3.0,
    ).start()
    assert h.connected.wait(10), h.last_error
    yield h
    h.stop()


def wait_until(pred, timeout_s: float, every_s: float = 0.05) -> bool:
    """Poll ``pred`` until true or the deadline (for state with no event to wait on, e.g. another process's DB)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


def schema_validator(kind: str):
    import jsonschema

    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
