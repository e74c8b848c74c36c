"""The local SQLite store: the single source of truth on the unit."""

from agent.store.db import Database, Migration, open_database, register_migrations
from agent.store.writer import Writer

__all__ = ["Database", "Migration", "Writer", "open_database", "register_migrations"]
