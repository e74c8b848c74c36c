"""scripts/install.sh in a throwaway root (--root): what it lays down, what --uninstall removes, and
--system-opencv (the agent installed from the docs' wheelhouse on Debian's python3-opencv)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import mirror_dir
from tests.service import boot
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


SYSTEM_PY = "/usr/bin/python3"


def _has_system_cv2() -> bool:
    return subprocess.run([SYSTEM_PY, "-c", "import cv2"], capture_output=True).returncode == 0


def need_system_opencv() -> None:
    """Debian's OpenCV for /usr/bin/python3: installed with apt when missing (we are root), else skip."""
    if not Path(SYSTEM_PY).exists():
        pytest.skip(f"{SYSTEM_PY} is needed (the system Python that a system OpenCV belongs to)")
    if _has_system_cv2():
        return
    if shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        args = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-opencv"]
        subprocess.run(args, capture_output=True, env=env, timeout=900)
    if not _has_system_cv2():
        pytest.skip("no system OpenCV and apt-get could not install it (apt-get install python3-opencv)")


def test_system_opencv_installs_the_agent_on_the_system_build(tmp_path):
    need_system_opencv()
    why = boot.unavailable()
    if why and "pip" in why:
        pytest.skip(why)
    wheels = boot.wheelhouse(system_opencv=True)  # the docs' wheelhouse for --system-opencv
    root = tmp_path / "root"
    r = run("--root", str(root), "--system-opencv", "--python", SYSTEM_PY, "--wheels", str(wheels))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "without the pip OpenCV wheel" in r.stdout
    used = [ln for ln in r.stdout.splitlines() if "using the system OpenCV: OpenCV " in ln]
    assert used and "/usr/lib/python3/dist-packages/cv2" in used[0], r.stdout
    assert used[0].endswith(("GStreamer: yes", "GStreamer: no")), used

    venv = root / "opt/edge-agent/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert not list(venv.glob("lib/python3*/site-packages/opencv*")), "the pip wheel was installed"
    assert list(venv.glob("lib/python3*/site-packages/edge_agent*"))  # the agent itself is in the venv
    # the agent on the system OpenCV: doctor says which (system build, its version, GStreamer)
    # and it runs: the sample clip decoded by the system OpenCV, the default model on LiteRT (numpy 1.x)
    mirror = mirror_dir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[storage]\npath = "{tmp_path / "agent.sqlite"}"\n'
        f'[models]\ndir = "{tmp_path / "models"}"\nmirror = "{mirror}"\n'
        f'[[cameras]]\nname = "clip"\nsource = "{mirror / "media" / "traffic_frames.mp4"}"\n'
    )
    doctor = [str(venv / "bin/edge-agent"), "doctor", "--config", str(cfg), "--json"]
    d = subprocess.run(
        [*doctor, "--only", "camera", "--only", "model"], capture_output=True, text=True, timeout=180
    )
    assert "Traceback" not in d.stderr, d.stderr
    checks = {c["name"]: c for c in json.loads(d.stdout)["checks"]}
    assert checks["camera:clip"]["status"] == "ok" and checks["camera:clip"]["data"]["width"] == 960, checks
    assert checks["model:ssd_mobilenet_v1_coco"]["status"] == "ok", checks
    cv = checks["opencv"]
    assert cv["status"] == "ok" and cv["data"]["origin"] == "system", cv
    assert cv["detail"].startswith(f"OpenCV {cv['data']['version']} (system build, /usr/lib/python3/"), cv

    # the same root installed the default way again: the venv is made anew, without system site-packages
    r = run("--root", str(root), "--no-pip")
    assert r.returncode == 0 and "re-creating" in r.stdout, r.stdout + r.stderr
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()


def test_system_opencv_without_one_is_an_error_with_a_fix(tmp_path):
    if not Path(SYSTEM_PY).exists():
        pytest.skip(f"{SYSTEM_PY} is needed")
    bare = tmp_path / "bare"  # a Python that sees no OpenCV at all
    subprocess.run([SYSTEM_PY, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    root = tmp_path / "root"
    r = run("--root", str(root), "--system-opencv", "--python", str(bare / "bin/python"), "--no-pip")
    assert r.returncode != 0, r.stdout
    assert "error: --system-opencv:" in r.stderr and "import cv2" in r.stderr, r.stderr
    fix = "pass --python /usr/bin/python3" if _has_system_cv2() else "apt-get install python3-opencv"
    assert f"fix: {fix}" in r.stderr, r.stderr
    assert not (root / "opt/edge-agent").exists() and not (root / "etc/passwd").exists()  # nothing laid down
