"""Console access to a running agent: find its API from the config, or read its database instead.

:func:`open_source` returns an :class:`ApiSource` when the daemon's API answers, else a
:class:`DbSource` on the SQLite file (read-only). Both offer the same calls, so a command is written
once. Only the standard library is used (no HTTP client dependency on the unit's console).
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from agent.api import queries
from agent.api.config import is_loopback
from agent.errors import AgentError, StoreError

DEFAULT_CONFIG = Path("/etc/edge-agent/config.toml")
CONFIG_ENV = "EDGE_AGENT_CONFIG"


def load(config: str | None) -> tuple[Any, str | None]:
    """The agent's config: --config, else $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml if it
    exists, else the built-in defaults. Returns (config, the file used or None)."""
    from agent.config import load_config

    path = config or os.environ.get(CONFIG_ENV) or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None)
    return load_config(path), path


def api_url(cfg: Any) -> str:
    """Where the daemon's API answers on this machine (a wildcard bind is reached on loopback)."""
    host = cfg.api.bind
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.api.port}"


class ApiSource:
    kind = "api"

    def __init__(self, base: str, token: str | None, timeout_s: float = 3.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    @property
    def where(self) -> str:
        return f"the running agent ({self.base})"

    def get(self, path: str, **params: Any) -> Any:
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        req = urllib.request.Request(self.base + path + (f"?{q}" if q else ""), headers={"Accept": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:  # noqa: S310 - our own loopback URL
            return json.loads(r.read().decode())

    def status(self) -> dict[str, Any]:
        return self.get("/api/status")

    def detections(self, **kw: Any) -> list[dict[str, Any]]:
        return self.get("/api/detections", **kw)["items"]

    def readings(self, **kw: Any) -> list[dict[str, Any]]:
        kw.setdefault("since", "400d")
        return self.get("/api/readings", **kw)["items"]

    def close(self) -> None:
        pass


class DbSource:
    kind = "database"

    def __init__(self, cfg: Any, path: Path, reason: str) -> None:
        from agent.store.db import connect

        if not path.exists():
            raise StoreError(f"the agent is not reachable ({reason}) and its database {path} does not exist",
                             "start the agent (systemctl start edge-agent) or pass --config with the right storage.path")
        self.cfg = cfg
        self.path = path
        self.reason = reason
        self.conn: sqlite3.Connection = connect(path, readonly=True)

    @property
    def where(self) -> str:
        return f"the database {self.path} (read-only; agent not reachable: {self.reason})"

    def status(self) -> dict[str, Any]:
        from agent.api.status import offline_status

        return offline_status(self.conn, self.cfg, self.path)

    def detections(self, *, camera: str | None = None, after_id: int | None = None, limit: int = 100, **_: Any) -> list[dict]:
        return queries.detections(self.conn, camera=camera, after_id=after_id, limit=limit)["items"]

    def readings(self, *, sensor: str | None = None, after_id: int | None = None, limit: int = 100, **_: Any) -> list[dict]:
        return queries.readings(self.conn, sensor=sensor, after_id=after_id, limit=limit)["items"]

    def close(self) -> None:
        self.conn.close()


def _token_for(cfg: Any) -> tuple[str | None, str | None]:
    """(token, problem) when the API needs one; (None, None) when it does not."""
    if is_loopback(cfg.api.bind) and not cfg.api.require_token:
        return None, None
    from agent.service import token as tokens

    try:
        return tokens.read(cfg.api.token_file), None
    except AgentError as exc:
        return None, str(exc)


def open_source(cfg: Any, *, url: str | None = None, db: str | None = None, offline: bool = False) -> ApiSource | DbSource:
    """The daemon's API if it answers, else its database (read-only)."""
    path = Path(db) if db else Path(cfg.storage.path)
    if offline:
        return DbSource(cfg, path, "--offline given")
    if not cfg.api.enabled and not url:
        return DbSource(cfg, path, "api.enabled is false in the config")
    token, problem = _token_for(cfg)
    src = ApiSource(url or api_url(cfg), token)
    try:
        src.get("/healthz")
        return src
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 429):
            why = problem or f"HTTP {exc.code}: the token was refused"
            return DbSource(cfg, path, f"{src.base} answered {exc.code} ({why})")
        if exc.code == 503:  # alive but not ready: the API still serves status
            return src
        return DbSource(cfg, path, f"{src.base} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return DbSource(cfg, path, f"nothing answers at {src.base}: {reason}")
