"""The systemd unit passes `systemd-analyze verify` and rates <= 2.5 in `systemd-analyze security`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.service.systemd_tools import need_systemd_analyze, offline_root

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ["edge-agent.service", "edge-agent-retry.service", "edge-agent-retry.timer"]
MAX_EXPOSURE = 2.5


@pytest.fixture(scope="module")
def analyze() -> str:
    return need_systemd_analyze()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("root")
    unitdir = r / "etc" / "systemd" / "system"
    unitdir.mkdir(parents=True)
    for u in UNITS:
        shutil.copy(SYSTEMD / u, unitdir / u)
    return offline_root(r)


def directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_verify_is_clean(analyze, root):
    r = subprocess.run(
        [analyze, "verify", f"--root={root}", *UNITS], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", r.stdout + r.stderr


def test_verify_catches_a_broken_unit(analyze, root, tmp_path):
    bad = root / "etc" / "systemd" / "system" / "edge-agent-broken.service"
    bad.write_text(
        (SYSTEMD / "edge-agent.service")
        .read_text()
        .replace("Type=notify", "Type=notfy")
        .replace("/opt/edge-agent/venv/bin/edge-agent run", "/opt/edge-agent/venv/bin/missing run")
    )
    try:
        r = subprocess.run(
            [analyze, "verify", f"--root={root}", bad.name], capture_output=True, text=True, timeout=60
        )
        assert r.returncode != 0 and "missing" in r.stderr and "notfy" in r.stderr
    finally:
        bad.unlink()


def test_security_exposure(analyze, root):
    r = subprocess.run(
        [
            analyze,
            "security",
            "--offline=true",
            f"--root={root}",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            "edge-agent.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for edge-agent\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    score = float(m.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= MAX_EXPOSURE and r.returncode == 0, r.stdout[-3000:]


def test_required_directives():
    d = directives(SYSTEMD / "edge-agent.service")
    expect = {
        "Type": "notify",
        "Restart": "on-failure",
        "DevicePolicy": "closed",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
        "StateDirectory": "edge-agent",
        "ConfigurationDirectory": "edge-agent",
        "User": "edge-agent",
        "NotifyAccess": "main",
    }
    for k, v in expect.items():
        assert v in d.get(k, []), f"{k}={v} missing"
    assert d["WatchdogSec"] and d["StartLimitBurst"] and d["StartLimitIntervalSec"]
    assert set(d["SupplementaryGroups"][0].split()) == {"video", "dialout", "plugdev"}
    allowed = " ".join(d["DeviceAllow"])
    for dev in ("char-video4linux", "char-ttyUSB", "char-ttyACM", "char-usb_device", "char-apex"):
        assert dev in allowed
    assert "AF_PACKET" not in d["RestrictAddressFamilies"][0]


def test_reload_device_classes_and_sysusers():
    d = directives(SYSTEMD / "edge-agent.service")
    # `systemctl reload` works: the README promises it
    assert d.get("ExecReload") == ["/bin/sh -c 'kill -HUP $MAINPID'"]
    # DeviceAllow= takes a device node or a class; a directory (/dev/dma_heap) allows nothing
    for entry in d["DeviceAllow"]:
        dev = entry.split()[0]
        assert dev.startswith(("char-", "block-")) or not Path(dev).is_dir(), entry
        assert dev != "/dev/dma_heap", entry
    assert "char-dma_heap rw" in d["DeviceAllow"]
    # Debian's groups are not declared again (3 warnings at every boot otherwise)
    lines = [
        ln.split() for ln in (SYSTEMD / "edge-agent.sysusers").read_text().splitlines() if ln and ln[0] != "#"
    ]
    assert not [ln for ln in lines if ln[0] == "g" and ln[1] in ("video", "dialout", "plugdev")], lines
    assert {ln[2] for ln in lines if ln[0] == "m"} == {"video", "dialout", "plugdev"}


_RULE_KEY = re.compile(r'^(?P<key>[A-Z_]+)(\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<val>[^"]*)"$')
_MATCH_KEYS = {
    "ACTION",
    "KERNEL",
    "SUBSYSTEM",
    "DRIVER",
    "KERNELS",
    "SUBSYSTEMS",
    "DRIVERS",
    "ATTR",
    "ATTRS",
    "ENV",
    "TAG",
}
_ASSIGN_KEYS = {"GROUP", "MODE", "OWNER", "SYMLINK", "TAG", "ENV", "RUN"}


def test_udev_rules_are_well_formed_and_cover_the_devices():
    text = (SYSTEMD / "70-edge-agent.rules").read_text()
    rules = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line in rules:
        parts = [p.strip() for p in re.split(r",\s*(?=[A-Z_]+[{=!+:-])", line)]
        assigns = 0
        for part in parts:
            m = _RULE_KEY.match(part)
            assert m, f"cannot parse {part!r} in: {line}"
            key, op = m["key"], m["op"]
            if op in ("==", "!="):
                assert key in _MATCH_KEYS, f"{key} cannot be matched: {line}"
            else:
                assert key in _ASSIGN_KEYS, f"{key} cannot be assigned: {line}"
                assigns += 1
            if key == "MODE":
                assert m["val"] == "0660"
        assert assigns, f"rule assigns nothing: {line}"
    for vid, pid in (("1a6e", "089a"), ("18d1", "9302")):
        assert any(
            f'ATTR{{idVendor}}=="{vid}"' in r
            and f'ATTR{{idProduct}}=="{pid}"' in r
            and 'GROUP="plugdev"' in r
            for r in rules
        ), f"Coral {vid}:{pid}"
    assert any('SUBSYSTEM=="apex"' in r for r in rules)
    assert any("ttyUSB" in r and 'SYMLINK+="edge-agent/port-' in r for r in rules)
