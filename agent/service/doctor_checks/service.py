"""The service itself, as systemd sees it: loaded, active, how often it restarted, its watchdog.

``systemctl show edge-agent.service`` gives it all without privileges. On a machine where systemd
is not PID 1 (a container without it, a laptop running the agent by hand) the check is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from agent.service.doctor_checks.base import Check, Context, Result, fail, ok, skip, warn

if TYPE_CHECKING:
    from agent.config import AgentConfig

UNIT = "edge-agent.service"
_PROPS = (
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "MainPID",
    "WatchdogUSec",
    "StatusText",
    "ActiveEnterTimestamp",
    "UnitFileState",
)


def service_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    return [Check("service", "service", check_service, min(ctx.timeout_s, 10.0))]


def _usec(text: str) -> float | None:
    """systemd's WatchdogUSec (``30s``, ``1min 30s``, ``0``, or plain microseconds) in seconds."""
    t = text.strip()
    if t in ("", "0", "infinity"):
        return 0.0 if t in ("", "0") else None
    if t.isdigit():
        return int(t) / 1e6
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for part in t.split():
        num = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = part[len(num) :] or "s"
        try:
            total += float(num) * units[unit]
        except (ValueError, KeyError):
            return None
    return total


def show(unit: str = UNIT) -> dict[str, str] | None:
    """``systemctl show`` properties of ``unit``; None when systemd cannot be asked."""
    exe = shutil.which("systemctl")
    if exe is None or not os.path.isdir("/run/systemd/system"):
        return None
    try:
        r = subprocess.run(
            [exe, "show", unit, "--no-pager", *(f"--property={p}" for p in _PROPS)],
            capture_output=True,
            text=True,
            timeout=8,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return dict(line.partition("=")[::2] for line in r.stdout.splitlines() if "=" in line)


def check_service() -> Result:
    p = show()
    if p is None:
        return skip("systemd is not running here (no /run/systemd/system): the service is not checked")
    if p.get("LoadState") != "loaded":
        return warn(
            f"{UNIT} is not installed ({p.get('LoadState', '?')})",
            "install the service: sudo scripts/install.sh (see docs/install.md)",
        )
    restarts = int(p.get("NRestarts") or 0)
    wd = _usec(p.get("WatchdogUSec", ""))
    data = {
        "active": p.get("ActiveState"),
        "sub": p.get("SubState"),
        "result": p.get("Result"),
        "restarts": restarts,
        "pid": int(p.get("MainPID") or 0),
        "watchdog_s": wd,
        "status_text": p.get("StatusText") or None,
        "enabled": p.get("UnitFileState"),
    }
    state = f"{p.get('ActiveState')} ({p.get('SubState')})"
    if p.get("ActiveState") != "active":
        why = f", last result {p['Result']}" if p.get("Result") not in (None, "", "success") else ""
        return fail(
            f"{UNIT} is {state}{why}, {restarts} restart(s)",
            "see why: journalctl -u edge-agent -n 50; then sudo systemctl restart edge-agent"
            + (
                ""
                if p.get("UnitFileState") == "enabled"
                else "; and enable it: sudo systemctl enable edge-agent"
            ),
            **data,
        )
    detail = (
        f"{state} since {p.get('ActiveEnterTimestamp') or '?'}, pid {data['pid']}, "
        f"{restarts} restart(s), watchdog {f'{wd:g} s' if wd else 'off'}"
        + (f"; {data['status_text']}" if data["status_text"] else "")
    )
    if not wd:
        return warn(
            detail,
            "the unit has no WatchdogSec=: a hung agent is never restarted; reinstall the unit (scripts/install.sh)",
            **data,
        )
    if restarts:
        return warn(
            detail,
            "systemd restarted the agent (a crash, the watchdog or the memory limit): "
            "journalctl -u edge-agent -p warning -b shows why",
            **data,
        )
    return ok(detail, **data)
