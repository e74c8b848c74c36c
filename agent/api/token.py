"""The local API's bearer token: one random line in a file only the agent's user can read.

The agent creates it on first run (:func:`load_or_create`); ``edge-agent provision`` writes it
too (or keeps the existing one); ``edge-agent token show | rotate`` are for technicians. It lives in
the state directory (``/var/lib/edge-agent/api-token``), the one place the sandboxed service may
write. Files are mode 0600; when root writes one, it is handed to the service user.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from pathlib import Path

from agent.errors import AgentError
from agent.fsutil import STATE_DIR, atomic_write, ownership

log = logging.getLogger(__name__)

DEFAULT_TOKEN_FILE = STATE_DIR / "api-token"
TOKEN_ENV = "EDGE_AGENT_TOKEN_FILE"
_VALID = re.compile(r"^[A-Za-z0-9_\-.~+/=]{16,256}$")


def default_path() -> Path:
    """``$EDGE_AGENT_TOKEN_FILE`` or ``/var/lib/edge-agent/api-token``."""
    env = os.environ.get(TOKEN_ENV)
    return Path(env) if env else DEFAULT_TOKEN_FILE


def generate() -> str:
    """A new token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def check(token: str) -> str:
    """Return ``token`` stripped, or raise AgentError when it is unfit for a bearer header."""
    token = token.strip()
    if not _VALID.fullmatch(token):
        raise AgentError(
            "the API token must be 16-256 characters of letters, digits and -._~+/=",
            "leave it out to have one generated, or use `edge-agent token rotate`",
        )
    return token


def read(path: str | Path | None = None) -> str:
    """Read the token; AgentError (with the fix) when it is missing, unreadable or empty."""
    p = Path(path) if path else default_path()
    try:
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AgentError(
            f"no API token at {p}", "start the agent once (it creates one) or run `edge-agent token rotate`"
        ) from None
    except PermissionError:
        raise AgentError(
            f"cannot read the API token {p}: permission denied",
            "run as root (sudo edge-agent token show) or as the edge-agent user",
        ) from None
    except OSError as exc:
        raise AgentError(
            f"cannot read the API token {p}: {exc.strerror}", "check the file and the disk"
        ) from None
    if not text:
        raise AgentError(
            f"the API token file {p} is empty", "run `edge-agent token rotate` to write a new one"
        )
    return text


def write(path: str | Path, token: str) -> Path:
    """Write ``token`` atomically with mode 0600 (owned by the service user when root writes it)."""
    p = Path(path)
    return atomic_write(p, check(token) + "\n", 0o600, ownership("secret"))


def load_or_create(path: str | Path | None = None) -> str:
    """Return the token in ``path``, creating a new one first when the file is missing or empty.

    A token file that others may read (group/other bits set) is tightened to 0600 (and logged)
    rather than refused, so a careless copy never takes the API down.
    """
    p = Path(path) if path else default_path()
    try:
        st = p.stat()
    except FileNotFoundError:
        token = generate()
        write(p, token)
        return token
    if stat.S_IMODE(st.st_mode) & 0o077:
        log.warning(
            "API token %s was readable by others (mode %o); setting 0600", p, stat.S_IMODE(st.st_mode)
        )
        try:
            os.chmod(p, 0o600)
        except OSError as exc:
            raise AgentError(
                f"the API token {p} is readable by others and cannot be fixed: {exc.strerror}",
                f"chmod 600 {p}",
            ) from None
    try:
        return read(p)
    except AgentError:
        if p.exists() and p.stat().st_size == 0:
            token = generate()
            write(p, token)
            return token
        raise


def rotate(path: str | Path | None = None) -> str:
    """Replace the token with a new one and return it (the old one stops working)."""
    p = Path(path) if path else default_path()
    token = generate()
    write(p, token)
    return token
