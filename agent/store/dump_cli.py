"""``edge-agent dump TABLE``: a table of the agent's database as CSV, JSON or NDJSON, for technicians.

Reads the database read-only (also while the agent runs: WAL), through sqlite-utils' table API
(``rows_where`` with a filter, an order and a limit), so a technician can take detections,
readings or the outbox off a unit on a USB stick without knowing SQL.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click
import sqlite_utils

from agent.errors import AgentError, StoreError


@click.command("dump")
@click.argument("table")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Agent config file: its database (storage.path) "
    "[default: $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml, else built-in defaults].",
)
@click.option("--db", type=click.Path(dir_okay=False), help="The database file (overrides storage.path).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "ndjson"]), default="csv", show_default=True
)
@click.option(
    "--since", help="Only rows whose ts is at or after this UTC time (ISO 8601), for tables with ts."
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows (oldest first).")
def dump_cmd(
    table: str, config: str | None, db: str | None, fmt: str, since: str | None, limit: int | None
) -> None:
    """Write TABLE (detections, readings, crossings, outbox, ...) to stdout as CSV, a JSON array or
    NDJSON (one object per line). `edge-agent dump` with an unknown table lists the tables."""
    from agent.clihelp import load
    from agent.store.db import connect

    cfg, _ = load(config)
    path = Path(db) if db else Path(cfg.storage.path)
    if not path.exists():
        raise StoreError(f"database {path} does not exist", "give --db PATH or --config FILE (storage.path)")
    database = sqlite_utils.Database(connect(path, readonly=True))
    names = [t for t in database.table_names() if not t.startswith(("_", "sqlite_"))]
    if table not in names:
        raise AgentError(f"no table {table!r} in {path}", f"tables: {', '.join(sorted(names))}")
    t = database.table(table)
    where, params = None, []
    if since:
        if "ts" not in t.columns_dict:
            raise AgentError(f"table {table} has no ts column", "leave --since out for this table")
        where, params = "ts >= ?", [since]
    order = "ts, rowid" if "ts" in t.columns_dict else "rowid"
    rows = t.rows_where(where, params, order_by=order, limit=limit)
    out = sys.stdout
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(list(t.columns_dict))
        for r in rows:
            w.writerow(["" if v is None else v for v in r.values()])
    elif fmt == "ndjson":
        for r in rows:
            out.write(json.dumps(r, default=str) + "\n")
    else:
        out.write("[")
        for i, r in enumerate(rows):
            out.write(("," if i else "") + "\n" + json.dumps(r, default=str))
        out.write("\n]\n")


commands = [dump_cmd]
