"""scripts/install.sh in a throwaway root (--root): what it lays down, and what --uninstall removes."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.service.systemd_tools import need_systemd_analyze, offline_root

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh needs root (chown, sysusers)")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180)


def entry(root: Path, db: str, name: str) -> list[str] | None:
    for line in (root / "etc" / db).read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return f
    return None


def test_install_and_uninstall_in_a_root(tmp_path):
    need_systemd_analyze()
    root = tmp_path / "root"
    r = run("--root", str(root), "--no-pip")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "starts at the next boot" in r.stdout

    user = entry(root, "passwd", "edge-agent")
    assert user and user[6] == "/usr/sbin/nologin" and user[5] == "/var/lib/edge-agent"
    uid, gid = int(user[2]), int(user[3])
    for g in ("video", "dialout", "plugdev"):
        members = entry(root, "group", g)
        assert members and "edge-agent" in members[3].split(","), g

    conf, state = root / "etc/edge-agent", root / "var/lib/edge-agent"
    assert (stat.S_IMODE(conf.stat().st_mode), conf.stat().st_uid, conf.stat().st_gid) == (0o750, 0, gid)
    assert (stat.S_IMODE(state.stat().st_mode), state.stat().st_uid) == (0o750, uid)
    assert (root / "opt/edge-agent/venv/bin/python").exists()
    assert os.readlink(root / "usr/local/bin/edge-agent") == "/opt/edge-agent/venv/bin/edge-agent"
    assert (root / "opt/edge-agent/docs/install.md").exists()
    unitdir = root / "etc/systemd/system"
    for name in ("edge-agent.service", "edge-agent-retry.service", "edge-agent-retry.timer"):
        assert (unitdir / name).read_text() == (REPO / "systemd" / name).read_text()
    assert (unitdir / "multi-user.target.wants/edge-agent.service").is_symlink()
    assert (unitdir / "timers.target.wants/edge-agent-retry.timer").is_symlink()
    assert (root / "etc/udev/rules.d/70-edge-agent.rules").exists()
    assert (root / "usr/lib/sysusers.d/edge-agent.conf").exists()

    # the installed tree verifies as a whole
    offline_root(root)
    v = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "edge-agent.service", "edge-agent-retry.timer"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert v.returncode == 0 and not v.stderr.strip(), v.stderr

    # a second run (an upgrade) is fine
    assert run("--root", str(root), "--no-pip").returncode == 0

    (conf / "config.toml").write_text("# provisioned\n")
    (state / "edge-agent.sqlite").write_bytes(b"data")
    r = run("--root", str(root), "--uninstall")
    assert r.returncode == 0, r.stderr
    assert not (root / "opt/edge-agent").exists() and not (unitdir / "edge-agent.service").exists()
    assert not (unitdir / "multi-user.target.wants/edge-agent.service").exists()
    assert not (root / "etc/udev/rules.d/70-edge-agent.rules").exists()
    assert not (root / "usr/local/bin/edge-agent").is_symlink()
    assert (conf / "config.toml").exists() and (state / "edge-agent.sqlite").exists()
    assert entry(root, "passwd", "edge-agent")

    r = run("--root", str(root), "--uninstall", "--purge")
    assert r.returncode == 0, r.stderr
    assert not conf.exists() and not state.exists()
    assert entry(root, "passwd", "edge-agent") is None and entry(root, "group", "edge-agent") is None
    assert "edge-agent" not in entry(root, "group", "video")[3]


def test_bad_options_and_source(tmp_path):
    r = run("--frobnicate")
    assert r.returncode != 0 and "unknown option --frobnicate" in r.stderr
    r = run("--root", str(tmp_path / "r"), "--source", str(tmp_path), "--no-pip")
    assert r.returncode != 0 and "is not an edge-agent source tree" in r.stderr and "fix:" in r.stderr
