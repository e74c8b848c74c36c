"""Helpers for the systemd tests: make sure systemd-analyze exists, build an offline root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def need_systemd_analyze() -> str:
    """Path of systemd-analyze, installing the `systemd` package with apt when root and missing."""
    exe = shutil.which("systemd-analyze")
    if exe is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"],
            env=env,
            capture_output=True,
            timeout=600,
        )
        exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail(
            "systemd-analyze is missing: apt-get install systemd (the unit tests need it, not a running systemd)"
        )
    return exe


def offline_root(root: Path) -> Path:
    """Give ``root`` the system's own units and stand-ins for the programs the units run, so
    `systemd-analyze verify --root` can resolve dependencies (sysinit.target, ...) offline."""
    dst = root / "usr" / "lib" / "systemd" / "system"
    if not dst.exists():
        shutil.copytree(SYSTEM_UNITS, dst, symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")
    for exe in ("usr/bin/systemctl", "usr/bin/sh", "opt/edge-agent/venv/bin/edge-agent"):
        p = root / exe
        if not p.exists() and not p.is_symlink():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("#!/bin/sh\n")
            p.chmod(0o755)
    return root
