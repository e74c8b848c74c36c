"""Moved to :mod:`agent.host` (#13). This re-export stays only until agent/sync/retention.py and
agent/sync/summary.py, which other work is changing now, import agent.host themselves."""

from agent.host import clock_synced, db_used_bytes  # noqa: F401
