"""Shared fixtures: the asset mirror, fresh databases, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import agent.parts  # noqa: F401 - every part's tables and sections, as the entry points load them

ROOT = Path(__file__).resolve().parent.parent


def mirror_dir() -> Path:
    """The asset mirror (EDGE_AGENT_MIRROR, default ../shared/assets next to the checkout)."""
    env = os.environ.get("EDGE_AGENT_MIRROR")
    p = Path(env) if env else ROOT.parent / "shared" / "assets"
    if not p.is_absolute():
        p = (ROOT / p).resolve()
    return p


@pytest.fixture(scope="session")
def mirror() -> Path:
    p = mirror_dir()
    if not (p / "SHA256SUMS").exists():
        pytest.fail(f"asset mirror not found at {p}: set EDGE_AGENT_MIRROR to the shared/assets folder")
    return p


@pytest.fixture(scope="session")
def model_path(mirror):
    """model_path('ssd_mobilenet_v1_coco_quant.tflite') -> Path in the mirror (test-only files too)."""

    def get(name: str) -> Path:
        p = mirror / "models" / name
        assert p.exists(), f"missing mirror model {p}"
        return p

    return get


@pytest.fixture(scope="session")
def media_path(mirror):
    def get(name: str) -> Path:
        p = mirror / "media" / name
        assert p.exists(), f"missing mirror media {p}"
        return p

    return get


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "agent.sqlite"


def run_cli(
    *args: str,
    timeout: float = 120,
    env: dict | None = None,
    cwd: str | Path | None = None,
    input: str | bytes | None = None,
) -> subprocess.CompletedProcess:
    """Run `edge-agent ARGS` in a subprocess (the real entry point) and return the result."""
    e = dict(os.environ)
    e.setdefault("EDGE_AGENT_MIRROR", str(mirror_dir()))
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=isinstance(input, str) or input is None,
        timeout=timeout,
        env=e,
        cwd=cwd or ROOT,
        input=input,
    )


@pytest.fixture
def cli():
    return run_cli
