"""``edge-agent export ngsi-ld``: the entities of a time range as JSON Lines."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click

from agent.errors import ConfigError, StoreError
from agent.ngsi_ld import encode, source

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_duration(s: str) -> float:
    m = _DURATION.match(s.strip())
    if not m:
        raise ConfigError(f"--since {s!r} is not a duration", "write a number and a unit: 90s, 15m, 1h, 7d")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def entities(
    conn: sqlite3.Connection, cfg: Any | None, since: str, until: str, types: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Key-values entities of both types for ``(since, until]`` (the export and the sink share this)."""
    unit = source.unit_of(conn, cfg)
    out: list[dict[str, Any]] = []
    if "TrafficFlowObserved" in types:
        out += source.traffic(conn, cfg, since, until, unit)
    if "AirQualityObserved" in types:
        out += source.air_quality(conn, cfg, since, until, unit, partial=True)
    return out


@click.group("export")
def export_group() -> None:
    """Export stored data in standard formats."""


@export_group.command("ngsi-ld")
@click.option("--db", "db", type=click.Path(dir_okay=False), help="Read this database file (read-only).")
@click.option(
    "--config",
    envvar="EDGE_AGENT_CONFIG",
    type=click.Path(dir_okay=False),
    help="Agent config (database path, device id/site/location, lines) [env EDGE_AGENT_CONFIG].",
)
@click.option("--since", default="1h", show_default=True, help="How far back: 90s, 15m, 1h, 7d.")
@click.option(
    "--form",
    type=click.Choice(["normalized", "keyValues"]),
    default="normalized",
    show_default=True,
    help="NGSI-LD representation.",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["TrafficFlowObserved", "AirQualityObserved"]),
    help="Only these entity types (default: both).",
)
def export_ngsi_ld(db: str | None, config: str | None, since: str, form: str, types: tuple[str, ...]) -> None:
    """Print TrafficFlowObserved and AirQualityObserved entities as JSON Lines (FIWARE Smart Data Models).

    TrafficFlowObserved: one per camera, line, direction, completed bin and vehicle class (and all
    classes). AirQualityObserved: one per PM sensor per UTC hour the range overlaps (the current one too,
    marked by its reliability), with the EPA NowCast AQI.
    See docs/ngsi-ld.md."""
    from agent.config import load_config
    from agent.store.db import connect

    cfg = load_config(config) if config else None
    path = Path(db) if db else (Path(cfg.storage.path) if cfg else None)
    if path is None:
        raise ConfigError("no database given", "pass --db PATH or --config FILE (or set EDGE_AGENT_CONFIG)")
    if not path.exists():
        raise StoreError(f"database {path} does not exist", "check --db / storage.path")
    seconds = parse_duration(since)
    try:
        conn = connect(path, readonly=True)
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"cannot open {path}: {exc}", "check the path and its permissions") from exc
    try:
        now = time.time()
        es = entities(
            conn,
            cfg,
            encode._iso(now - seconds),
            encode._iso(now),
            types or ("TrafficFlowObserved", "AirQualityObserved"),
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}", "is it an edge-agent database?") from exc
    finally:
        conn.close()
    for e in es:
        sys.stdout.write(
            json.dumps(encode.normalized(e) if form == "normalized" else e, ensure_ascii=False) + "\n"
        )
    click.echo(f"{len(es)} entities", err=True)


commands = [export_group]
