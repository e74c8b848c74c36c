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
from collections import deque
from pathlib import Path
from typing import Any

from agent.api import queries, vision_queries
from agent.api.config import is_loopback
from agent.errors import AgentError, StoreError


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
    #: the largest ``limit`` each route serves in one answer (larger asks are fetched in pages)
    MAX_READINGS, MAX_OUTBOX = 5000, 1000

    def __init__(self, base: str, token: str | None, timeout_s: float = 3.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    @property
    def where(self) -> str:
        return f"the running agent ({self.base})"

    def get(self, path: str, **params: Any) -> Any:
        q = urllib.parse.urlencode({k: _param(v) for k, v in params.items() if v is not None})
        req = urllib.request.Request(
            self.base + path + (f"?{q}" if q else ""), headers={"Accept": "application/json"}
        )
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as r:  # noqa: S310 - our own loopback URL
            return json.loads(r.read().decode())

    def query(self, path: str, **params: Any) -> Any:
        """:meth:`get` for the console commands: a refused parameter (4xx) becomes an :class:`AgentError`
        with the API's own explanation; a 5xx or a dropped connection is raised as is (the caller may
        read the database instead)."""
        try:
            return self.get(path, **params)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in (401, 429):
                raise
            try:
                detail = json.loads(exc.read().decode()).get("detail")
            except (ValueError, AttributeError, OSError):
                detail = None
            if isinstance(detail, list):  # FastAPI's validation errors
                detail = "; ".join(
                    f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
                )
            raise AgentError(
                f"the agent's API refused the request (HTTP {exc.code}): {detail or exc.reason}"
            ) from None

    def status(self) -> dict[str, Any]:
        return self.get("/api/status")

    def detections(self, **kw: Any) -> list[dict[str, Any]]:
        return self.get("/api/detections", **kw)["items"]

    def results(self, **kw: Any) -> list[dict[str, Any]]:
        return self.get("/api/results", **kw)["items"]

    def readings(
        self,
        *,
        sensor: str | None = None,
        metric: str | None = None,
        since: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """As :meth:`DbSource.readings`: the newest ``limit`` since ``since`` (default: 400 days), or
        the first ``limit`` after ``after_id``; over the route's largest page, fetched in pages."""
        kw = {"sensor": sensor, "metric": metric, "since": since or "400d"}
        if limit <= self.MAX_READINGS:
            return self.query("/api/readings", **kw, after_id=after_id, limit=limit)["items"]
        keep: deque[dict[str, Any]] | list[dict[str, Any]] = (
            [] if after_id is not None else deque(maxlen=limit)
        )
        after = after_id or 0
        while True:  # oldest first, page by page: all of them after after_id, or the newest `limit`
            page = self.query("/api/readings", **kw, after_id=after, limit=self.MAX_READINGS)["items"]
            keep.extend(page)
            if len(page) < self.MAX_READINGS or (after_id is not None and len(keep) >= limit):
                return list(keep)[:limit]
            after = page[-1]["id"]

    def counts(self, *, since: str, bin_s: int, camera: str | None = None) -> dict[str, Any]:
        """Crossings per bin: ``{since, bin_seconds, items, totals, note}`` (the ``/api/counts`` document)."""
        return self.query("/api/counts", since=since, bin_seconds=bin_s, camera=camera)

    def outbox(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        from_seq: int | None = None,
        limit: int = 50,
        payload: bool = False,
    ) -> dict[str, Any]:
        """Outbox statistics and rows: ``{stats, items, note}`` (the ``/api/outbox`` document)."""
        kw = {"state": state, "kind": kind, "payload": payload}
        if limit <= self.MAX_OUTBOX:
            return self.query("/api/outbox", **kw, from_seq=from_seq, limit=limit)
        keep: deque[dict[str, Any]] | list[dict[str, Any]] = (
            [] if from_seq is not None else deque(maxlen=limit)
        )
        start = from_seq or 0
        while True:  # ascending pages: from from_seq on, or all of them keeping the newest `limit`
            doc = self.query("/api/outbox", **kw, from_seq=start, limit=self.MAX_OUTBOX)
            keep.extend(doc["items"])
            if len(doc["items"]) < self.MAX_OUTBOX or (from_seq is not None and len(keep) >= limit):
                return {**doc, "items": list(keep)[:limit]}
            start = doc["items"][-1]["seq"] + 1

    def close(self) -> None:
        pass


def _param(v: Any) -> Any:
    return ("true" if v else "false") if isinstance(v, bool) else v


class DbSource:
    kind = "database"

    def __init__(self, cfg: Any, path: Path, reason: str, *, unreachable: bool = True) -> None:
        """``reason``: why the database is read (with ``unreachable``: why the agent did not answer)."""
        from agent.store.db import connect

        if not path.exists():
            if not unreachable:
                raise StoreError(
                    f"database {path} does not exist", "pass --db PATH or --config FILE (storage.path)"
                )
            raise StoreError(
                f"the agent is not reachable ({reason}) and its database {path} does not exist",
                "start the agent (systemctl start edge-agent) or pass --config with the right storage.path",
            )
        self.cfg = cfg
        self.path = path
        self.reason = reason
        self.unreachable = unreachable
        self.conn: sqlite3.Connection = connect(path, readonly=True)

    @property
    def where(self) -> str:
        return f"the database {self.path} (read-only; {'agent not reachable: ' if self.unreachable else ''}{self.reason})"

    def status(self) -> dict[str, Any]:
        from agent.api.status import offline_status

        return offline_status(self.conn, self.cfg, self.path)

    def detections(
        self, *, camera: str | None = None, after_id: int | None = None, limit: int = 100, **_: Any
    ) -> list[dict]:
        return vision_queries.detections(self.conn, camera=camera, after_id=after_id, limit=limit)["items"]

    def results(
        self,
        *,
        camera: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
        **_: Any,
    ) -> list[dict]:
        return vision_queries.results(self.conn, camera=camera, kind=kind, after_id=after_id, limit=limit)[
            "items"
        ]

    def readings(
        self,
        *,
        sensor: str | None = None,
        metric: str | None = None,
        since: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[dict]:
        t = _since(since, "400d") if since is not None else None
        return queries.readings(
            self.conn, sensor=sensor, metric=metric, since=t, after_id=after_id, limit=limit
        )["items"]

    def counts(self, *, since: str, bin_s: int, camera: str | None = None) -> dict[str, Any]:
        return queries.counts_doc(self.conn, since=_since(since, "6h"), bin_s=bin_s, camera=camera)

    def outbox(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        from_seq: int | None = None,
        limit: int = 50,
        payload: bool = False,
    ) -> dict[str, Any]:
        return queries.outbox(
            self.conn, state=state, kind=kind, from_seq=from_seq, limit=limit, payload=payload
        )

    def close(self) -> None:
        self.conn.close()


def _since(text: str, default: str) -> float:
    try:
        return queries.parse_since(text, default)
    except queries.QueryError as exc:
        raise AgentError(str(exc)) from None


def _token_for(cfg: Any) -> tuple[str | None, str | None]:
    """(token, problem) when the API needs one; (None, None) when it does not."""
    if is_loopback(cfg.api.bind) and not cfg.api.require_token:
        return None, None
    from agent.api import token as tokens

    try:
        return tokens.read(cfg.api.token_file), None
    except AgentError as exc:
        return None, str(exc)


def open_source(
    cfg: Any, *, url: str | None = None, db: str | None = None, offline: bool = False, db_direct: bool = False
) -> ApiSource | DbSource:
    """The daemon's API if it answers, else its database (read-only).

    ``db_direct``: a ``db`` given is read directly, without asking the API (the console commands'
    ``--db PATH``; for ``status`` and ``tail`` it is only where to look when the agent does not answer).
    """
    path = Path(db) if db else Path(cfg.storage.path)
    if db and db_direct:
        return DbSource(cfg, path, "--db given", unreachable=False)
    if offline:
        return DbSource(cfg, path, "--offline given", unreachable=False)
    if not cfg.api.enabled and not url:
        return DbSource(cfg, path, "api.enabled is false in the config")
    token, problem = _token_for(cfg)
    src = ApiSource(url or api_url(cfg), token)
    try:
        src.get("/healthz")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 429):
            why = problem or f"HTTP {exc.code}: the token was refused"
            return DbSource(cfg, path, f"{src.base} answered {exc.code} ({why})")
        if exc.code != 503:  # 503: alive but not ready, the API still serves status
            return DbSource(cfg, path, f"{src.base} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return DbSource(cfg, path, f"nothing answers at {src.base}: {reason}")
    other = None if url else other_agent(src, cfg)
    if other:
        return DbSource(cfg, path, other)
    return src


def other_agent(src: ApiSource, cfg: Any) -> str | None:
    """Why the agent answering at ``src`` is not the one ``cfg`` describes (another device id, or
    another database: two agents on one machine, a port reused), or None when it is that one. An
    agent whose status cannot be read (token trouble) is given the benefit of the doubt."""
    try:
        st = src.get("/api/status")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    dev = (st.get("device") or {}).get("id")
    db = (st.get("database") or {}).get("path")
    if dev is not None and dev != cfg.device.id:
        return f"the agent at {src.base} is device {dev!r}, not {cfg.device.id!r} (another agent's port)"
    if db is not None and os.path.abspath(db) != os.path.abspath(str(cfg.storage.path)):
        return (
            f"the agent at {src.base} uses the database {db}, not {cfg.storage.path} (another agent's port)"
        )
    return None


def running_agent(cfg: Any, url: str | None = None) -> ApiSource | None:
    """The daemon's API when something answers there (even refusing the token), else None."""
    if not cfg.api.enabled and not url:
        return None
    token, _ = _token_for(cfg)
    src = ApiSource(url or api_url(cfg), token)
    try:
        src.get("/healthz")
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 429, 503):  # the agent answers those (not ready, token trouble)
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if not url and other_agent(src, cfg):
        return None
    return src


def fetch(
    cfg: Any, src: ApiSource | DbSource, call: Any, *, db: str | None = None
) -> tuple[Any, ApiSource | DbSource]:
    """``call(src)``; when the API stops answering in between (or answers 5xx), the same call on the
    database instead. Returns (the answer, the source that gave it)."""
    if isinstance(src, DbSource):
        return call(src), src
    try:
        return call(src), src
    except urllib.error.HTTPError as exc:
        if exc.code < 500 and exc.code not in (401, 429):
            raise
        why = f"{src.base} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        why = f"{src.base} stopped answering: {getattr(exc, 'reason', exc)}"
    dbs = DbSource(cfg, Path(db) if db else Path(cfg.storage.path), why)
    return call(dbs), dbs
