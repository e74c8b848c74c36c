"""Opening the database: pragmas, integrity check and versioned, per-component migrations.

Each part of the agent owns its tables: the module that defines them holds its migrations under its
own component name, its part declares them (``Part.migrations``) and :mod:`agent.parts` registers
them here (:func:`register_migrations`); the database
applies every registered component's pending migrations, in version order, each in its own
transaction, and records them in ``_migrations``. Adding a table never means editing this file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import StoreError

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...) and either SQL text or a function of a connection."""

    version: int
    name: str
    apply: str | Callable[[sqlite3.Connection], None]


_REGISTRY: dict[str, list[Migration]] = {}
_REGISTRY_LOCK = threading.Lock()


def register_migrations(component: str, migrations: Iterable[Migration]) -> None:
    """Register a component's migrations (idempotent: re-registering the same versions is a no-op)."""
    with _REGISTRY_LOCK:
        known = {m.version: m for m in _REGISTRY.get(component, [])}
        for m in migrations:
            known[m.version] = m
        _REGISTRY[component] = sorted(known.values(), key=lambda m: m.version)


def forget_migrations(component: str) -> None:
    with _REGISTRY_LOCK:
        _REGISTRY.pop(component, None)


def registered_components() -> dict[str, list[Migration]]:
    with _REGISTRY_LOCK:
        return {k: list(v) for k, v in _REGISTRY.items()}


_PARTS_LOADED = False


def parts_loaded() -> None:
    """Called once by :mod:`agent.parts` after it has imported every part that owns tables."""
    global _PARTS_LOADED
    _PARTS_LOADED = True


def _require_parts() -> None:
    """A process that opens the database must know the whole schema: ``import agent.parts`` first
    (every entry point does). Without it, migrating would silently skip the tables of parts not
    imported yet, so this is an error, not a smaller schema."""
    if not _PARTS_LOADED:
        raise RuntimeError(
            "the agent's parts are not loaded, so the schema is incomplete: import agent.parts before "
            "opening the database (the entry points and the pipeline do)"
        )


def connect(path: str | Path, *, readonly: bool = False, timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open a connection with the agent's pragmas (WAL, NORMAL sync, busy timeout, foreign keys)."""
    path = Path(path)
    try:
        if readonly:
            uri = f"file:{path.resolve()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path), timeout=timeout_s, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: a corrupt file fails here
    except OSError as exc:  # the directory cannot be made: a file in the way, no permission
        raise StoreError(
            f"cannot create the database's directory {path.parent}: {exc.strerror or exc}",
            f"set storage.path to a writable place, or create {path.parent} for the agent's user"
            + (" (a file is in the way)" if isinstance(exc, (NotADirectoryError, FileExistsError)) else ""),
        ) from None
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc) or "malformed" in str(exc):
            raise StoreError(
                f"database {path} is not a valid SQLite file: {exc}",
                f"move it aside (mv {path} {path}.corrupt) and restart; the agent creates a new one",
            ) from None
        raise StoreError(
            f"cannot open database {path}: {exc}",
            "check that the directory exists and is writable by the agent's user (storage.path)",
        ) from None
    return conn


def wal_limits(max_db_mb: float, page_size: int = 4096) -> tuple[int, int]:
    """(``wal_autocheckpoint`` pages, ``journal_size_limit`` bytes) for a size budget: the WAL may
    hold a sixteenth of the budget (SQLite's default of 1000 pages is 4 MB, more than a small
    budget), at least 16 pages and at most SQLite's default, and is truncated back to that after
    each checkpoint."""
    pages = max(16, min(1000, int(max_db_mb * 2**20 / 16 / page_size)))
    return pages, pages * page_size


class Database:
    """The agent's database file.

    ``conn`` is for the owner thread (normally the writer); other threads open their own
    connections with :meth:`reader` (WAL lets readers run beside the single writer).
    """

    def __init__(self, path: str | Path, *, check: str = "quick", max_db_mb: float | None = None) -> None:
        self.path = Path(path)
        self.conn = connect(self.path)
        #: what one transaction should write at most (the WAL's share of the budget), None: no budget
        self.wal_bytes: int | None = None
        if max_db_mb is not None:
            pages, limit = wal_limits(max_db_mb)
            self.wal_bytes = limit
            self.conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
            self.conn.execute(f"PRAGMA journal_size_limit={limit}")
        if check != "off":
            self.integrity_check(full=(check == "full"))
        self.migrate()

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection as a ``sqlite_utils.Database`` (imported here: about 10 MB of modules a
        running agent does not otherwise need)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def reader(self) -> sqlite3.Connection:
        return connect(self.path, readonly=True)

    def integrity_check(self, *, full: bool = False) -> None:
        pragma = "integrity_check" if full else "quick_check"
        try:
            rows = [r[0] for r in self.conn.execute(f"PRAGMA {pragma}")]
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"database {self.path} is not a valid SQLite file: {exc}",
                f"move it aside (mv {self.path} {self.path}.corrupt) and restart; the agent creates a new one",
            ) from exc
        if rows != ["ok"]:
            raise StoreError(
                f"database {self.path} failed {pragma}: {'; '.join(rows[:5])}",
                f"move it aside (mv {self.path} {self.path}.corrupt) and restart, or repair it with sqlite3 .recover",
            )

    def migrate(self) -> list[tuple[str, int]]:
        """Apply pending migrations of every registered component. Returns what was applied."""
        _require_parts()
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (component TEXT NOT NULL, version INTEGER NOT NULL,"
            " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
            " PRIMARY KEY (component, version))"
        )
        done = {(c, v) for c, v in self.conn.execute("SELECT component, version FROM _migrations")}
        applied: list[tuple[str, int]] = []
        for component, migrations in sorted(registered_components().items()):
            for m in migrations:
                if (component, m.version) in done:
                    continue
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    if isinstance(m.apply, str):
                        for stmt in _split_sql(m.apply):
                            self.conn.execute(stmt)
                    else:
                        m.apply(self.conn)
                    self.conn.execute(
                        "INSERT INTO _migrations (component, version, name) VALUES (?, ?, ?)",
                        (component, m.version, m.name),
                    )
                    self.conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self.conn.execute("ROLLBACK")
                    raise StoreError(
                        f"schema migration {component} v{m.version} ({m.name}) failed on {self.path}: {exc}",
                        "the database may come from a newer agent version; restore a backup or move it aside",
                    ) from exc
                applied.append((component, m.version))
                log.info("applied migration %s v%d: %s", component, m.version, m.name)
        return applied

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        self.conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no triggers with inner semicolons in our schema)."""
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out


def open_database(path: str | Path, *, check: str = "quick") -> Database:
    return Database(path, check=check)
