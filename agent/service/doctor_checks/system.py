"""The unit itself: clock, disk space, the database, and device-node permissions for the service user."""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from agent.service.doctor_checks.base import Check, Context, Result, fail, ok, skip, warn

if TYPE_CHECKING:
    from agent.config import AgentConfig

SERVICE_USER = "edge-agent"
_EARLIEST = 1704067200  # 2024-01-01: a clock before this never was set (no RTC, no NTP yet)


# -- clock ---------------------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float = 3.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _adjtimex_synced() -> bool | None:
    """The kernel's view via adjtimex(2): TIME_ERROR (5) means unsynchronised. None: unavailable."""

    class _Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 512)]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != 5


def kernel_sync() -> tuple[bool | None, str]:
    """(synchronised?, how we know): timedatectl, then chrony, then adjtimex."""
    v = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if v in ("yes", "no"):
        return v == "yes", f"timedatectl NTPSynchronized={v}"
    out = _run(["chronyc", "-n", "tracking"])
    if out:
        for line in out.splitlines():
            if line.lower().startswith("leap status"):
                status = line.split(":", 1)[1].strip()
                return status.lower() != "not synchronised", f"chrony leap status {status}"
    if Path("/run/systemd/timesync/synchronized").exists():
        return True, "systemd-timesyncd"
    s = _adjtimex_synced()
    if s is not None:
        return s, "kernel (adjtimex): " + ("synchronised" if s else "unsynchronised")
    return None, "no way to ask (no timedatectl, chrony or adjtimex)"


def clock_check(cfg: AgentConfig, ctx: Context) -> Check:
    return Check("clock", "clock", lambda: check_clock(ctx), ctx.timeout_s + 5)


def check_clock(ctx: Context) -> Result:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    if now < _EARLIEST:
        return fail(
            f"the system clock says {stamp}: it was never set",
            "connect the unit to NTP (or a GPS with a fix) "
            "and rerun; a Pi has no RTC, so the time is lost at every power cut until NTP sets it",
        )
    synced, how = kernel_sync()
    ctx.gps_done.wait(ctx.timeout_s + 3)  # the GPS sensor check fills ctx.gps
    gps = ctx.gps
    gps_txt, gps_ok = "", None
    if gps is not None:
        if gps.get("trusted") is True:
            gps_ok, gps_txt = (
                True,
                f"GPS ({gps['sensor']}): system clock within {abs(gps['offset_s']):.2f} s of GPS time",
            )
        elif gps.get("trusted") is False:
            gps_ok, gps_txt = (
                False,
                f"GPS ({gps['sensor']}): system clock is {gps['offset_s']:+.1f} s off GPS time",
            )
        else:
            gps_txt = f"GPS ({gps['sensor']}): no valid fix yet, cannot judge the clock"
    detail = f"{stamp}; {how}" + (f"; {gps_txt}" if gps_txt else "")
    data = {"kernel_synchronised": synced, "source": how, "gps": gps}
    if gps_ok is False:
        return fail(
            detail,
            "the clock is wrong: check NTP (timedatectl timesync-status / chronyc sources) or let chrony "
            "use the GPS (gpsd + refclock); timestamps of everything recorded now are off",
            **data,
        )
    if synced or gps_ok:
        return ok(detail, **data)
    if synced is False:
        return fail(
            detail,
            "nothing synchronises the clock: enable NTP (timedatectl set-ntp true, or chrony) and "
            "check that an NTP server is reachable, or add a GPS sensor (driver nmea) with a fix",
            **data,
        )
    return warn(
        detail, "cannot tell whether the clock is synchronised: install chrony or systemd-timesyncd", **data
    )


# -- disk and database ---------------------------------------------------------------------------


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def storage_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    return [
        Check("disk", "disk", lambda: check_disk(cfg), ctx.timeout_s),
        Check("database", "database", lambda: check_database(cfg), max(ctx.timeout_s, 60.0)),
    ]


def check_disk(cfg: AgentConfig) -> Result:
    db = Path(cfg.storage.path)
    where = _existing_ancestor(db.parent)
    st = os.statvfs(where)
    free_mb = st.f_bavail * st.f_frsize / 2**20
    budget = cfg.storage.max_db_mb
    detail = f"{free_mb:,.0f} MB free on the filesystem of {where} (database budget storage.max_db_mb = {budget:g} MB)"
    data = {"free_mb": round(free_mb, 1), "budget_mb": budget, "path": str(where)}
    if free_mb < budget / 10:
        return fail(
            detail,
            "free space (delete old files, use a bigger card) or lower storage.max_db_mb; "
            "the database cannot grow into its budget",
            **data,
        )
    if free_mb < 2 * budget:
        return warn(
            detail,
            "less than twice the database budget is free: lower storage.max_db_mb or free space",
            **data,
        )
    return ok(detail, **data)


def check_database(cfg: AgentConfig) -> Result:
    from agent.store.db import connect

    db = Path(cfg.storage.path)
    if not db.exists():
        parent = _existing_ancestor(db.parent)
        return ok(f"{db} does not exist yet: the agent will create it (under {parent})", path=str(db))
    conn = connect(db, readonly=True)  # StoreError names a file that is not a database
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return fail(
            f"{db}: not a valid SQLite database ({exc})",
            f"move it aside (mv {db} {db}.corrupt) and restart the agent; it creates a new one",
        )
    finally:
        conn.close()
    if rows != ["ok"]:
        return fail(
            f"{db} failed quick_check: {'; '.join(rows[:3])}",
            f"move it aside (mv {db} {db}.corrupt) and restart, or repair it with sqlite3 .recover",
        )
    size = sum(Path(str(db) + s).stat().st_size for s in ("", "-wal") if Path(str(db) + s).exists())
    return ok(f"{db}: quick_check ok, {size / 2**20:.1f} MB", path=str(db), bytes=size)


# -- permissions ---------------------------------------------------------------------------------


def service_user(requested: str | None) -> tuple[pwd.struct_passwd, bool]:
    """(the user to check for, whether it is the real service user). ``requested`` overrides."""
    name = requested or SERVICE_USER
    try:
        return pwd.getpwnam(name), True
    except KeyError:
        if requested:
            raise
    return pwd.getpwuid(os.getuid()), False


def can_rw(user: pwd.struct_passwd, path: str) -> tuple[bool, str]:
    """Whether ``user`` may read and write ``path`` by owner/group/mode (ACLs are not read)."""
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    owner = _name(pwd.getpwuid, st.st_uid)
    group = _name(grp.getgrgid, st.st_gid)
    desc = f"{owner}:{group} {mode:04o}"
    if user.pw_uid == 0:
        return True, desc + " (root)"
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    if st.st_uid == user.pw_uid:
        bits = (mode >> 6) & 7
    elif st.st_gid in groups:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & 6 == 6, desc


def _name(fn, ident: int) -> str:
    try:
        return fn(ident)[0]
    except KeyError:
        return str(ident)


def permission_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.media import device_nodes_of_cameras, edgetpu_nodes

    nodes = (
        device_nodes_of_cameras(cfg)
        + [(f"sensor {s.name}", s.port) for s in cfg.sensors if s.enabled]
        + edgetpu_nodes()
    )
    checks = [Check("service-user", "permissions", lambda: check_service_user(ctx), ctx.timeout_s)]
    checks += [
        Check(f"perm:{node}", "permissions", partial(check_node, what, node, ctx), ctx.timeout_s)
        for what, node in nodes
    ]
    return checks


def check_service_user(ctx: Context) -> Result:
    try:
        user, real = service_user(ctx.user)
    except KeyError:
        return fail(f"user {ctx.user} does not exist", "give an existing user to --user")
    groups = sorted(g.gr_name for g in grp.getgrall() if user.pw_name in g.gr_mem)
    if not real:
        return warn(
            f"service user {SERVICE_USER} does not exist yet; device permissions checked for {user.pw_name}",
            "run scripts/install.sh (it creates the user with groups video, dialout, plugdev)",
        )
    missing = (
        [g for g in ("video", "dialout", "plugdev") if g not in groups and _group_exists(g)]
        if user.pw_uid
        else []
    )
    detail = f"{user.pw_name} (uid {user.pw_uid}), groups: {', '.join(groups) or 'none'}"
    if missing:
        return warn(
            detail + f"; not in {', '.join(missing)}",
            f"usermod -aG {','.join(missing)} {user.pw_name} "
            "(cameras need video, serial ports dialout, the Edge TPU plugdev)",
            user=user.pw_name,
            groups=groups,
        )
    return ok(detail, user=user.pw_name, groups=groups)


def _group_exists(g: str) -> bool:
    try:
        grp.getgrnam(g)
        return True
    except KeyError:
        return False


def check_node(what: str, node: str, ctx: Context) -> Result:
    try:
        user, _ = service_user(ctx.user)
    except KeyError:
        return skip(f"user {ctx.user} does not exist")
    if not os.path.exists(node):
        return skip(f"{what}: {node} does not exist (its own check reports it)")
    real = os.path.realpath(node)
    shown = node if real == node else f"{node} -> {real}"
    allowed, desc = can_rw(user, real)
    if allowed:
        return ok(f"{what}: {shown} ({desc}): {user.pw_name} may read and write", node=real, mode=desc)
    st = os.stat(real)
    group = _name(grp.getgrgid, st.st_gid)
    return fail(
        f"{what}: {shown} ({desc}): {user.pw_name} may not read and write it",
        f"add {user.pw_name} to group {group} (usermod -aG {group} {user.pw_name}) or install the udev rules "
        "(scripts/install.sh) that give the device group access",
        node=real,
        mode=desc,
    )
