"""Commands: ``edge-agent outbox status | list | replay`` (the hub's commands are in agent/hub/cli.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click

from agent.clihelp import query, source_options
from agent.errors import AgentError, StoreError


def _read(path: Path) -> sqlite3.Connection:
    from agent.store.db import connect

    if not path.exists():
        raise StoreError(
            f"database {path} does not exist",
            "give --db PATH or --config FILE (storage.path), or start the agent once",
        )
    conn = connect(path, readonly=True)
    try:
        conn.execute("SELECT 1 FROM outbox LIMIT 1")
    except sqlite3.OperationalError:
        raise StoreError(
            f"{path} has no outbox table", "is this the agent's database? (storage.path)"
        ) from None
    return conn


@click.group("outbox")
def outbox_group() -> None:
    """Inspect the outbox (messages waiting for the broker) and re-send stored messages."""


def _outbox(config: str | None, url: str | None, db: str | None, offline: bool, what: str, **kw) -> dict:
    doc, _ = query(config, url, db, offline, what, lambda src: src.outbox(**kw))
    if doc["stats"] is None:
        raise StoreError(
            doc.get("note") or "no outbox in this database",
            "is this the agent's database? (storage.path, or --db PATH)",
        )
    return doc


@outbox_group.command("status")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def outbox_status(config: str | None, url: str | None, db: str | None, offline: bool, as_json: bool) -> None:
    """Backlog, last seq, session, delivered/rejected counts, pruning and gaps.

    From the running agent's API or, when it does not answer, the database (read-only); stderr says
    which one answered."""
    st = _outbox(config, url, db, offline, "outbox status", limit=1)["stats"]
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"last seq:        {st['last_seq']}  (session {st['session']})")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(st["pending_by_kind"].items())) or "-"
    click.echo(f"pending:         {st['pending']}  ({kinds})")
    if st["pending"]:
        click.echo(f"oldest pending:  seq {st['oldest_pending_seq']}, created {st['oldest_pending_created']}")
    click.echo(f"delivered:       {st['delivered']}  (kept; pruned oldest first over the storage budget)")
    click.echo(f"rejected:        {st['rejected']}")
    pr = st["pruned"]
    click.echo(
        f"pruned:          detections {pr.get('detections', 0)}, delivered {pr.get('delivered', 0)}, "
        f"undelivered {pr.get('undelivered', 0)}"
    )
    click.echo(f"gaps recorded:   {st['gaps']} ({st['pruned_undelivered_seqs']} seqs pruned before delivery)")


@outbox_group.command("list")
@source_options
@click.option(
    "--state", type=click.Choice(["pending", "delivered", "rejected"]), help="Only rows in this state."
)
@click.option("--kind", type=click.Choice(["summary", "health", "event"]), help="Only this kind.")
@click.option(
    "--from",
    "from_seq",
    type=click.IntRange(min=0),
    help="Start at this seq (ascending); default: the newest rows.",
)
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@click.option(
    "--payload",
    is_flag=True,
    help="Print each payload (JSON lines) as stored, before publish: publishing adds `session` (and `replay`).",
)
def outbox_list(
    config: str | None,
    url: str | None,
    db: str | None,
    offline: bool,
    state: str | None,
    kind: str | None,
    from_seq: int | None,
    limit: int,
    payload: bool,
) -> None:
    """List outbox rows (seq, kind, state, created, delivered, size).

    From the running agent's API or, when it does not answer, the database (read-only); stderr says
    which one answered."""
    rows = _outbox(
        config,
        url,
        db,
        offline,
        "outbox rows",
        state=state,
        kind=kind,
        from_seq=from_seq,
        limit=limit,
        payload=payload,
    )["items"]
    if payload:
        click.echo("payloads as stored, before publish: publishing adds session (and replay: true)", err=True)
        for r in rows:
            if r.get("payload") is not None:
                click.echo(r["payload"])
        return
    click.echo(
        f"{'SEQ':>8}  {'KIND':<8} {'STATE':<10} {'PRIO':>4}  {'CREATED':<24}  {'DELIVERED':<24}  {'BYTES':>6}  TOPIC"
    )
    for r in rows:
        click.echo(
            f"{r['seq']:>8}  {r['kind']:<8} {r['state']:<10} {r['priority']:>4}  {r['created']:<24}  "
            f"{r['delivered'] or '-':<24}  {r['bytes']:>6}  {r['topic']}"
        )
    if not rows:
        click.echo("(no rows)")


@outbox_group.command("replay")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Agent config file: its database (storage.path) and its API (to tell whether it runs) "
    "[default: $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml, else built-in defaults].",
)
@click.option("--db", type=click.Path(dir_okay=False), help="The database file (overrides storage.path).")
@click.option("--from", "from_seq", type=click.IntRange(min=1), required=True, help="First seq.")
@click.option("--to", "to_seq", type=click.IntRange(min=1), required=True, help="Last seq.")
def outbox_replay(config: str | None, db: str | None, from_seq: int, to_seq: int) -> None:
    """Mark stored messages FROM..TO pending again: the running agent re-sends them (within ~10 s),
    or the next start does. Prints what is no longer stored, and why.

    Writes the database directly, also while the agent runs (the local API is read-only): WAL and a
    busy timeout keep that safe, and the agent's publisher rescans the outbox."""
    from agent.api.client import running_agent
    from agent.clihelp import load
    from agent.store.db import connect
    from agent.sync import outbox

    if to_seq < from_seq:
        raise AgentError(
            f"--to {to_seq} is before --from {from_seq}",
            f"give the range in order: --from {to_seq} --to {from_seq}",
        )
    cfg, _ = load(config)
    path = Path(db) if db else Path(cfg.storage.path)
    _read(path).close()
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        n = outbox.requeue(conn, from_seq, to_seq)
        pending = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE seq BETWEEN ? AND ? AND state = 'pending'", (from_seq, to_seq)
        ).fetchone()[0]
        missing = outbox.missing_in_range(conn, from_seq, to_seq)
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"cannot update the outbox: {exc}", "retry; if the disk is full, free space first"
        ) from None
    finally:
        conn.close()
    click.echo(f"re-queued {n} message(s) in {from_seq}..{to_seq}; {pending} now pending")
    for m in missing:
        click.echo(f"  not stored: {m['from_seq']}..{m['to_seq']}: {m['reason']}")
    if path.resolve() != Path(cfg.storage.path).resolve():
        return  # not the configured agent's database: whether its agent runs is unknown here
    agent = running_agent(cfg)
    if agent is not None:
        click.echo(
            f"note: the agent is running ({agent.base}); its publisher picks the re-queued messages up within ~10 s"
        )
    else:
        click.echo("note: the agent is not running; it sends the re-queued messages when it starts")


commands = [outbox_group]
