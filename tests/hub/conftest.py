"""Fixtures for hub tests: the hub database in both flavours (a real PostgreSQL started for the session,
a fresh database per test; or a SQLite file), a real mosquitto, and in-process agents (tests/sync)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.hub.postgres import Postgres
from tests.sync.conftest import (  # noqa: F401 - fixtures shared with the sync tests
    USERS,
    agent_procs,
    agents,
    broker,
    certs,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def postgres():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[test,hub]' (scripts/test.sh does it)")
    try:
        pg = Postgres().start()
    except (RuntimeError, FileNotFoundError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL cannot be started here: {exc}")
    yield pg
    pg.stop()


def new_pg_database(pg: Postgres) -> str:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return pg.dsn.replace(f"/{pg.db}?", f"/{name}?")


@pytest.fixture(params=["sqlite", "postgresql"])
def dsn(request, tmp_path) -> str:
    """The hub database for one test: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite'}"
    return new_pg_database(request.getfixturevalue("postgres"))


class HubProcess:
    """`edge-agent hub ...` as a child process (killable with SIGKILL)."""

    def __init__(self, tmp_path: Path, name: str, args: list[str]) -> None:
        self.log = tmp_path / f"{name}.log"
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> HubProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "hub", *self.args],
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def hub_procs():
    procs: list[HubProcess] = []

    def make(tmp_path: Path, name: str, args: list[str]) -> HubProcess:
        p = HubProcess(tmp_path, name, args)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.kill()
