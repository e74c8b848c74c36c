"""Files written for the service: atomically, with the right mode and owner.

A reader (the agent, `config check`, a power cut on a ladder) sees either the old file or the new
one, never half of one: data goes to a temporary file in the same directory, is fsync'ed, gets its
mode and owner, and is renamed over the target; then the directory is fsync'ed.
"""

from __future__ import annotations

import grp
import os
import pwd
import tempfile
from pathlib import Path

from agent.errors import AgentError

SERVICE_USER = "edge-agent"
CONFIG_DIR = Path("/etc/edge-agent")
STATE_DIR = Path("/var/lib/edge-agent")


def service_ids(user: str = SERVICE_USER) -> tuple[int, int] | None:
    """(uid, gid) of the service user, or None when it does not exist (a dev machine, a test)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def _can_chown() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ownership(kind: str, user: str = SERVICE_USER) -> tuple[int, int] | None:
    """The (uid, gid) a file should get, or None to leave it as created.

    ``kind``: "secret" -> owned by the service user (e.g. the API token, mode 0600);
    "shared" -> root-owned, group of the service user (config, certificates, mode 0640).
    Only applied when running as root and the user exists.
    """
    ids = service_ids(user)
    if ids is None or not _can_chown():
        return None
    uid, gid = ids
    if kind == "secret":
        return uid, gid
    if kind == "shared":
        try:
            gid = grp.getgrnam(user).gr_gid
        except KeyError:
            pass
        return 0, gid
    raise ValueError(f"unknown ownership kind {kind!r}")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int, owner: tuple[int, int] | None = None) -> Path:
    """Create ``path`` (and parents) if missing; set mode/owner on it when we created it."""
    path = Path(path)
    if path.is_dir():
        return path
    try:
        path.mkdir(parents=True, mode=mode)
        os.chmod(path, mode)
        if owner is not None:
            os.chown(path, *owner)
    except OSError as exc:
        raise AgentError(
            f"cannot create directory {path}: {exc.strerror}", "run as root (sudo), or choose another path"
        ) from None
    return path


def atomic_write(path: Path, data: bytes | str, mode: int, owner: tuple[int, int] | None = None) -> Path:
    """Write ``data`` to ``path`` atomically with ``mode`` (and owner when given)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    parent = path.parent
    if not parent.is_dir():
        raise AgentError(
            f"cannot write {path}: directory {parent} does not exist",
            f"create it (mkdir -p {parent}) or run scripts/install.sh first",
        )
    fd = -1
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        tmp = ""
        fsync_dir(parent)
    except OSError as exc:
        raise AgentError(
            f"cannot write {path}: {exc.strerror or exc}",
            "check the disk is not full or read-only and that you may write there (sudo)",
        ) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path
