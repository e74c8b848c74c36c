"""``edge-agent counts``: volumes per line / direction / class, from the running agent's API or, when it
does not answer, the local database (read-only)."""

from __future__ import annotations

import json
import re

import click

from agent.api.queries import MAX_SPAN_S
from agent.clihelp import check_name, query, since_param, source_options

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '2d', '1w' (a bare number is minutes) -> seconds."""
    m = _DUR.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{text!r}: use a number with s, m, h, d or w (e.g. 15m, 1h, 7d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


@click.command("counts")
@click.option("--since", "since", default="1h", show_default=True, help="How far back: 90s, 15m, 1h, 2d, 1w.")
@click.option("--bin", "bin_", default="15m", show_default=True, help="Bin length (same units).")
@click.option("--camera", default=None, callback=check_name, help="Only this camera.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@source_options
def counts_cmd(
    since: str,
    bin_: str,
    camera: str | None,
    as_json: bool,
    config: str | None,
    url: str | None,
    db: str | None,
    offline: bool,
) -> None:
    """Vehicle and pedestrian counts per line, direction and class, in bins.

    Asks the running agent's API (found through --config); when it does not answer, reads the
    database read-only (safe while the agent runs), and says on stderr which one answered. Counts come
    from the crossings table, so any bin length works, whatever the agent's configured bin_minutes.
    """
    since_s, bin_s = parse_duration(since), int(parse_duration(bin_))
    if not 1 <= bin_s <= MAX_SPAN_S:
        raise click.BadParameter("must be between 1s and 400d", param_hint="--bin")
    start = since_param(since_s)
    doc, _ = query(
        config, url, db, offline, "counts", lambda src: src.counts(since=start, bin_s=bin_s, camera=camera)
    )
    if doc.get("note"):
        click.echo(f"note: {doc['note']}", err=True)
    rows = doc["items"]
    if as_json:
        click.echo(
            json.dumps(
                {"since": doc["since"], "bin_minutes": doc["bin_seconds"] / 60, "rows": rows}, indent=2
            )
        )
        return
    if not rows:
        click.echo(f"no crossings in the last {since}")
        return
    click.echo(f"{'bin start (UTC)':24} {'camera':12} {'line':12} {'direction':12} {'class':10} {'count':>6}")
    for r in rows:
        click.echo(
            f"{r['bin_start']:24} {r['camera']:12} {r['line']:12} {r['direction']:12} {r['class']:10} {r['count']:>6}"
        )


commands = [counts_cmd]
