"""``edge-agent privacy report``: what the unit stores, for how long, what leaves it; exit 1 over a limit."""

from __future__ import annotations

import json
import sys

import click


@click.group("privacy")
def privacy_group() -> None:
    """What this unit keeps and sends about people, and whether it stays within its limits."""


@privacy_group.command("report")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Agent config file [default: $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml, else built-in defaults].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object (schema edge-agent/privacy-report/1).")
def report_cmd(config: str | None, as_json: bool) -> None:
    """Print the privacy report: what is stored and for how long (oldest raw detection and image),
    what leaves the unit (and the small-count rule), whether camera images can be served, and the
    masks and blur modes in force.

    Exit status: 0 within every limit of [privacy.limits], 1 when one is exceeded (each is named with
    its fix), 2 config error, 5 database error.
    """
    from agent.clihelp import load
    from agent.privacy.report import build_report, render_text

    cfg, _ = load(config)
    rep = build_report(cfg)
    click.echo(json.dumps(rep, indent=2) if as_json else render_text(rep))
    if not rep["ok"]:
        sys.exit(1)


commands = [privacy_group]
