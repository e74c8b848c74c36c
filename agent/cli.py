"""The one entry point: ``edge-agent``. Thin: parses, calls the library, turns errors into messages.

Each part of the agent keeps its commands next to its code (``agent.inference.cli``,
``agent.sync.cli``, ...) as a module-level ``commands`` list; they are registered here, in one place.
"""

from __future__ import annotations

import logging
import sqlite3
import sys

import click

from agent import __version__
from agent.errors import AgentError, StoreError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # errors become messages, not tracebacks
        try:
            return super().invoke(ctx)
        except AgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except sqlite3.DatabaseError as exc:  # a page deep in the file is damaged: met only when read
            click.echo(
                f"error: the database is damaged or unreadable: {exc}\n"
                "  fix: run `edge-agent doctor`; move the file aside (storage.path) and restart the agent,"
                " or repair it with sqlite3 .recover",
                err=True,
            )
            sys.exit(StoreError.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edge-agent")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """edge-agent: cameras and serial sensors -> TFLite on the edge -> SQLite -> MQTT."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    from agent.service.logsetup import setup_logging

    setup_logging(level)


def _register() -> None:
    # Each part's commands: one line per part (each module has ``commands: list[click.Command]``).
    from agent import core_cli
    from agent.analytics import cli as analytics_cli
    from agent.analytics import validate_cli
    from agent.api import cli as api_cli
    from agent.hub import cli as hub_cli
    from agent.inference import cli as inference_cli
    from agent.ngsi_ld import cli as ngsi_ld_cli
    from agent.privacy import cli as privacy_cli
    from agent.service import cli as service_cli
    from agent.store import dump_cli
    from agent.sync import cli as sync_cli
    from firmware_bridge import cli as sensors_cli

    parts = (
        core_cli,
        inference_cli,
        sync_cli,
        hub_cli,
        analytics_cli,
        validate_cli,
        sensors_cli,
        api_cli,
        service_cli,
        privacy_cli,
        ngsi_ld_cli,
        dump_cli,
    )
    for mod in parts:
        for cmd in mod.commands:
            cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="edge-agent")


if __name__ == "__main__":
    main()
