"""The hub's database: PostgreSQL (psycopg 3) for a city, SQLite for one hub on a laptop.

One code path and one schema for both. SQL is written once with ``?`` placeholders and a few
dialect words that :meth:`HubDB.sql` translates:

- ``{JSON}`` -> ``JSONB`` (PostgreSQL) / ``TEXT`` holding JSON (SQLite);
- ``{TS}`` -> ``TIMESTAMPTZ`` / ``TEXT`` (UTC ISO-8601 with milliseconds, which sorts as time);
- ``{ID}`` -> an identity primary key / ``INTEGER PRIMARY KEY``;
- ``GREATEST(`` / ``LEAST(`` -> ``MAX(`` / ``MIN(`` in SQLite.

Values read back are normalised (timestamps as ISO strings, JSON columns as Python objects), so
callers never see which database answered.

DSNs: ``postgresql://user:pass@host:5432/db`` (any libpq URL or ``key=value`` string), or
``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite``, or a plain file path.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.errors import AgentError, ConfigError, StoreError
from agent.hub.schema import MIGRATIONS
from agent.timefmt import iso_utc

JSON_COLUMNS = {"payload", "status", "data"}


class HubDBError(StoreError):
    """The hub's database cannot be opened or written (exit code 5)."""


def parse_dsn(dsn: str) -> tuple[str, str]:
    """``(kind, target)``: ``("postgresql", dsn)`` or ``("sqlite", path)``."""
    d = dsn.strip()
    if not d:
        raise ConfigError("--dsn is empty", "give postgresql://user@host/db or sqlite:///hub.sqlite")
    low = d.lower()
    if low.startswith(("postgresql://", "postgres://")) or ("=" in d and "dbname" in low):
        return "postgresql", d
    if low.startswith("sqlite:"):
        rest = d[len("sqlite:") :]
        if not rest.startswith("///"):
            raise ConfigError(
                f"SQLite DSN {dsn!r}: use sqlite:///relative.sqlite or sqlite:////absolute/path.sqlite",
                "three slashes before a relative path, four before an absolute one",
            )
        path = rest[3:]
        if not path:
            raise ConfigError(f"SQLite DSN {dsn!r} names no file", "e.g. sqlite:///hub.sqlite")
        return "sqlite", path
    if "://" in d:
        scheme = d.split("://", 1)[0]
        raise ConfigError(
            f"unsupported database {scheme!r} in --dsn",
            "use postgresql://user@host/db (pip install 'edge-agent[hub]') or sqlite:///hub.sqlite",
        )
    return "sqlite", d


def _iso(v: _dt.datetime) -> str:
    return v.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubDB:
    """One connection to the hub's database (use one per thread).

    Args:
        dsn: see the module docstring.
        migrate: apply pending schema migrations (safe with several workers starting at once).
    """

    def __init__(self, dsn: str, *, migrate: bool = True, connect_timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.kind, target = parse_dsn(dsn)
        self._errors: type[Exception]  # what this database raises
        self._tx_depth = 0
        self.lock = threading.RLock()
        if self.kind == "postgresql":
            try:
                import psycopg
            except ImportError:
                raise ConfigError(
                    "PostgreSQL needs psycopg 3, which is not installed",
                    "pip install 'edge-agent[hub]'  (or use --dsn sqlite:///hub.sqlite)",
                ) from None
            self._errors = psycopg.Error
            try:
                self.conn: Any = psycopg.connect(
                    target, autocommit=True, connect_timeout=int(connect_timeout_s)
                )
            except psycopg.Error as exc:
                raise HubDBError(
                    f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}",
                    "check the DSN (host, port, user, database) and that the server runs",
                ) from None
        else:
            self._errors = sqlite3.Error
            path = Path(target)
            if path.parent and not path.parent.exists():
                raise HubDBError(
                    f"the directory of {path} does not exist", f"create it (mkdir -p {path.parent})"
                )
            try:
                self.conn = sqlite3.connect(
                    str(path), check_same_thread=False, isolation_level=None, timeout=30.0
                )
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as exc:
                raise HubDBError(
                    f"cannot open {path}: {exc}", "is it a SQLite file, and writable by this user?"
                ) from None
        if migrate:
            self.migrate()

    # -- SQL ---------------------------------------------------------------------------------------
    _WORDS_PG = {
        "{JSON}": "JSONB",
        "{TS}": "TIMESTAMPTZ",
        "{ID}": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    }
    _WORDS_SQLITE = {"{JSON}": "TEXT", "{TS}": "TEXT", "{ID}": "INTEGER PRIMARY KEY"}

    def sql(self, q: str) -> str:
        """Translate the dialect words and placeholders of ``q`` for this database."""
        if self.kind == "postgresql":
            for k, v in self._WORDS_PG.items():
                q = q.replace(k, v)
            return q.replace("?", "%s")
        for k, v in self._WORDS_SQLITE.items():
            q = q.replace(k, v)
        return re.sub(r"\bGREATEST\(", "MAX(", re.sub(r"\bLEAST\(", "MIN(", q))

    @property
    def is_pg(self) -> bool:
        return self.kind == "postgresql"

    def execute(self, q: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self.sql(q), tuple(params))

    def executemany(self, q: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        if self.is_pg:
            with self.conn.cursor() as cur:
                cur.executemany(self.sql(q), rows)
        else:
            self.conn.executemany(self.sql(q), rows)

    def query(self, q: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(q, params)
        if cur.description is None:
            return []
        cols = [d[0] for d in cur.description]
        return [self._row(cols, r) for r in cur.fetchall()]

    def scalar(self, q: str, params: Sequence[Any] = ()) -> Any:
        r = self.execute(q, params).fetchone()
        return None if r is None else self._value("", r[0])

    def _value(self, col: str, v: Any) -> Any:
        if isinstance(v, _dt.datetime):
            return _iso(v)
        if col in JSON_COLUMNS and isinstance(v, (str, bytes)):
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v

    def _row(self, cols: list[str], r: Sequence[Any]) -> dict[str, Any]:
        return {c: self._value(c, v) for c, v in zip(cols, r)}

    @contextmanager
    def transaction(self) -> Iterator[HubDB]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``, so concurrent writers queue, never fail
        half-way). Nested calls join the outer transaction."""
        with self.lock:
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield self
                finally:
                    self._tx_depth -= 1
                return
            if self.is_pg:
                with self.conn.transaction():
                    self._tx_depth = 1
                    try:
                        yield self
                    finally:
                        self._tx_depth = 0
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._tx_depth = 1
            try:
                yield self
            except BaseException:
                self._tx_depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._tx_depth = 0
            self.conn.execute("COMMIT")

    def lock_devices(self, keys: Sequence[tuple[str, str]]) -> None:
        """Lock the devices' rows until the transaction ends, always in (site, device) order, so two
        workers never deadlock (SQLite's write lock already covers the whole file)."""
        if not self.is_pg or not keys:
            return
        ks = sorted(set(keys))
        for i in range(0, len(ks), 500):
            part = ks[i : i + 500]
            marks = ",".join(["(?, ?)"] * len(part))
            self.execute(
                f"SELECT 1 FROM devices WHERE (site, device) IN ({marks}) ORDER BY site, device FOR UPDATE",
                [x for k in part for x in k],
            ).fetchall()

    def is_retryable(self, exc: BaseException) -> bool:
        """A deadlock, a serialization failure or a busy SQLite file: the whole batch can be retried."""
        if self.is_pg:
            import psycopg.errors as pe

            return isinstance(exc, (pe.DeadlockDetected, pe.SerializationFailure, pe.LockNotAvailable))
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    # -- schema ------------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded in ``hub_schema``; returns the versions applied."""
        applied: list[int] = []
        try:
            with self.transaction():
                if self.is_pg:  # several workers may start at once: one migrates, the others wait
                    self.execute("SELECT pg_advisory_xact_lock(7715019)")
                self.execute(
                    "CREATE TABLE IF NOT EXISTS hub_schema (version INTEGER PRIMARY KEY, applied {TS})"
                )
                have = {r["version"] for r in self.query("SELECT version FROM hub_schema")}
                for version, statements in MIGRATIONS:
                    if version in have:
                        continue
                    for st in statements:
                        self.execute(st)
                    self.execute(
                        "INSERT INTO hub_schema (version, applied) VALUES (?, ?)",
                        (version, iso_utc(time.time())),
                    )
                    applied.append(version)
        except self._errors as exc:
            raise HubDBError(
                f"cannot create or migrate the hub schema: {str(exc).strip().splitlines()[0]}",
                "does this user own the database (CREATE rights)? is it another program's database?",
            ) from None
        newest = max(v for v, _ in MIGRATIONS)
        found = self.scalar("SELECT MAX(version) FROM hub_schema") or 0
        if found > newest:
            raise HubDBError(
                f"the hub database has schema version {found}, newer than this edge-agent knows ({newest})",
                "upgrade edge-agent on this host (every worker must run the same or a newer version)",
            )
        return applied

    def schema_version(self) -> int:
        return int(self.scalar("SELECT MAX(version) FROM hub_schema") or 0)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


__all__ = ["HubDB", "HubDBError", "parse_dsn", "AgentError"]
