"""``edge-agent counts``: volumes per line / direction / class from the local database (read-only)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import click

from agent.errors import ConfigError
from agent.sections import iso_utc

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '2d', '1w' (a bare number is minutes) -> seconds."""
    m = _DUR.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r}: use a number with s, m, h, d or w (e.g. 15m, 1h, 7d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _db_path(db: str | None, config: str | None) -> Path:
    if db:
        return Path(db)
    if config:
        from agent.config import load_config

        return load_config(config).storage.path
    return Path("var/edge-agent.sqlite")


def volumes(conn: sqlite3.Connection, since_ts: float, bin_s: int, camera: str | None = None) -> list[dict]:
    """Crossings since ``since_ts`` grouped into UTC-aligned bins of ``bin_s`` seconds."""
    q = ("SELECT camera, line, direction, class, ts FROM crossings WHERE ts >= ?" + (" AND camera = ?" if camera else "")
         + " ORDER BY ts")
    args: tuple = (iso_utc(since_ts), camera) if camera else (iso_utc(since_ts),)
    from agent.analytics.store import parse_iso

    out: dict[tuple, int] = {}
    for cam, line, d, cls, ts in conn.execute(q, args):
        b = int(parse_iso(ts) // bin_s * bin_s)
        out[(b, cam, line, d, cls)] = out.get((b, cam, line, d, cls), 0) + 1
    return [{"bin_start": iso_utc(b), "bin_minutes": bin_s / 60, "camera": cam, "line": line, "direction": d,
             "class": cls, "count": n} for (b, cam, line, d, cls), n in sorted(out.items())]


@click.command("counts")
@click.option("--since", "since", default="1h", show_default=True, help="How far back: 90s, 15m, 1h, 2d, 1w.")
@click.option("--bin", "bin_", default="15m", show_default=True, help="Bin length (same units).")
@click.option("--camera", default=None, help="Only this camera.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Database file (default: storage.path of --config, else var/edge-agent.sqlite).")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None, help="Config file to read storage.path from.")
def counts_cmd(since: str, bin_: str, camera: str | None, as_json: bool, db: str | None, config: str | None) -> None:
    """Vehicle and pedestrian counts per line, direction and class, in bins, from the local database.

    Opens the database read-only (safe while the agent runs). Counts come from the crossings table,
    so any bin length works, whatever the agent's configured bin_minutes.
    """
    since_s, bin_s = parse_duration(since), int(parse_duration(bin_))
    if bin_s < 1:
        raise click.BadParameter("--bin must be at least 1s")
    path = _db_path(db, config)
    if not path.exists():
        raise ConfigError(f"database {path} does not exist", "pass --db PATH or --config FILE (storage.path), or start the agent once")
    from agent.store.db import connect

    conn = connect(path, readonly=True)
    try:
        try:
            rows = volumes(conn, time.time() - since_s, bin_s, camera)
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"{path} has no analytics tables ({exc})", "is this the agent's database? check --db / storage.path") from None
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps({"since": iso_utc(time.time() - since_s), "bin_minutes": bin_s / 60, "rows": rows}, indent=2))
        return
    if not rows:
        click.echo(f"no crossings in the last {since}")
        return
    click.echo(f"{'bin start (UTC)':24} {'camera':12} {'line':12} {'direction':12} {'class':10} {'count':>6}")
    for r in rows:
        click.echo(f"{r['bin_start']:24} {r['camera']:12} {r['line']:12} {r['direction']:12} {r['class']:10} {r['count']:>6}")


commands = [counts_cmd]
