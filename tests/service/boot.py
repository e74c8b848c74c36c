"""Boot a Debian 12 container with systemd as PID 1 (debootstrap + systemd-nspawn) for the tests.

- The rootfs is built once with ``debootstrap --variant=minbase`` (systemd, dbus, python3-venv:
  about 300 MB, 2 minutes) and cached in ``$EDGE_AGENT_TEST_CACHE`` (default
  ``/var/cache/edge-agent-tests``), so CI reuses it. Each test run boots an overlay of it (the
  cache is never written), from a fresh upper directory.
- The wheelhouse is the one docs/install.md tells installers to build (``pip wheel ...[opencv] setuptools
  wheel``), made with the host's Debian python3 (the container's Python) and cached next to it
  under a hash of pyproject.toml.
- The container gets the source tree (tracked and untracked files, no .venv), the wheelhouse
  and the asset mirror as bind mounts, and runs ``boot_drive.sh`` as a oneshot unit at each
  boot; the driver writes its results to /out and powers the container off.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("EDGE_AGENT_TEST_CACHE", "/var/cache/edge-agent-tests"))
DEBIAN_MIRROR = os.environ.get("EDGE_AGENT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates"
ROOTFS = CACHE / "debian12-rootfs"
NSPAWN = ["systemd-nspawn", "--register=no", "--keep-unit", "--console=pipe", "-q"]


def unavailable() -> str | None:
    """Why the boot test cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "the boot test needs root (debootstrap, overlay mounts, systemd-nspawn); run the suite as root"
    for exe, pkg in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap")):
        if shutil.which(exe) is None:
            return f"{exe} is not installed (scripts/test.sh installs it as root: apt-get install {pkg})"
    if not Path("/usr/bin/python3").exists():
        return "/usr/bin/python3 is needed to build the wheelhouse for the container's Python"
    if subprocess.run(["/usr/bin/python3", "-m", "pip", "--version"], capture_output=True).returncode != 0:
        return "pip for /usr/bin/python3 is not installed (scripts/test.sh installs it: apt-get install python3-pip)"
    return None


@contextmanager
def _locked(name: str):
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def rootfs() -> Path:
    """The cached Debian 12 rootfs, built when missing."""
    with _locked("rootfs"):
        if (ROOTFS / "etc" / "os-release").exists() and (ROOTFS / "usr" / "bin" / "python3").exists():
            return ROOTFS
        tmp = CACHE / "debian12-rootfs.part"
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                "bookworm",
                str(tmp),
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if r.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
        shutil.rmtree(ROOTFS, ignore_errors=True)
        tmp.rename(ROOTFS)
        return ROOTFS


def wheelhouse(system_opencv: bool = False) -> Path:
    """docs/install.md's offline wheelhouse for this tree, built with the container's Python; with
    ``system_opencv``, the recipe for ``install.sh --system-opencv`` on a numpy 1.x system (no pip
    OpenCV, ``numpy<2``)."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    dst = CACHE / f"wheels-py311-{key}{'-sysopencv' if system_opencv else ''}"
    reqs = (
        [str(ROOT), "setuptools", "wheel", "numpy<2"]
        if system_opencv
        else [f"{ROOT}[opencv]", "setuptools", "wheel"]
    )
    with _locked("wheels"):
        if (dst / ".complete").exists():
            return dst
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        # the recipe of docs/install.md, word for word apart from the paths
        r = subprocess.run(
            [
                "/usr/bin/python3",
                "-m",
                "pip",
                "wheel",
                "-q",
                "-w",
                str(dst),
                *reqs,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if r.returncode != 0:
            raise RuntimeError(f"pip wheel failed: {r.stderr[-3000:]}")
        for w in dst.glob("edge_agent-*.whl"):  # install.sh installs the tree itself, not this wheel
            w.unlink()
        (dst / ".complete").write_text("ok\n")
        return dst


def source_copy(dst: Path) -> Path:
    """The tree as an installer has it: tracked and untracked files, not what git ignores."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        src = ROOT / os.fsdecode(f)
        if src.is_file():
            target = dst / os.fsdecode(f)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dst


class Machine:
    """An overlay of the cached rootfs, booted as often as asked (state carries over between boots)."""

    def __init__(self, work: Path, mirror: Path) -> None:
        self.work = work
        self.mirror = mirror
        self.out = work / "out"
        self.merged = work / "merged"
        for d in ("upper", "ovl-work", "merged", "out", "src"):
            (work / d).mkdir(parents=True, exist_ok=True)
        self.src = source_copy(work / "src")
        self.wheels = wheelhouse()
        lower = rootfs()
        subprocess.run(
            [
                "mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'ovl-work'}", str(self.merged),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.console: list[str] = []

    def boot(self, timeout_s: float = 420) -> tuple[int, float]:
        """Boot once; the driver powers off when done. Returns (nspawn's exit status, seconds)."""
        cmd = [
            *NSPAWN,
            "-b",
            "-D", str(self.merged),
            f"--bind-ro={self.mirror}:/mirror",
            f"--bind-ro={self.wheels}:/wheels",
            f"--bind={self.src}:/src",
            f"--bind={self.out}:/out",
            f"--bind-ro={HERE / 'boot_drive.sh'}:/usr/local/sbin/boot-drive",
            f"--bind-ro={HERE / 'boottest.service'}:/etc/systemd/system/boottest.service",
            "systemd.wants=boottest.service",
        ]  # fmt: skip
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = p.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.terminate()  # nspawn halts the container
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
        self.console.append(out)
        return p.returncode, time.monotonic() - t0

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.merged)], capture_output=True)
