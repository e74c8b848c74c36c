"""The one entry point: ``edge-agent``. Thin: parses, calls the library, turns errors into messages.

Each part declares its commands (``Part.commands``) in a small ``<part>/clispec.py``: each command's
name and its one-line help; the part's command module (``agent.inference.cli``, ``agent.sync.cli``,
...) keeps the commands themselves as a ``commands`` list. This module builds one table from those
lists and its own, each list paired with the function that imports its module (a plain import
statement; see :mod:`agent.clispec` for why the import is here and not in the part). A command's module is
imported only when that command runs, so ``edge-agent --help`` and a typo answer at once instead of
loading numpy, pydantic and every part first (issue #15). ``tests/core/test_cli.py`` checks the
table against the modules and the parts, so it cannot drift from them.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Sequence

import click

from agent import __version__
from agent.analytics import clispec as analytics_commands
from agent.api import clispec as api_commands
from agent.clispec import CommandSpec, Loader, table
from agent.errors import AgentError, StoreError
from agent.inference import clispec as inference_commands
from agent.ngsi_ld import clispec as ngsi_ld_commands
from agent.service import clispec as service_commands
from agent.sync import clispec as sync_commands
from firmware_bridge import clispec as sensor_commands


def _core() -> Sequence[click.Command]:
    from agent import core_cli

    return core_cli.commands


def _dump() -> Sequence[click.Command]:
    from agent.store import dump_cli

    return dump_cli.commands


def _privacy() -> Sequence[click.Command]:
    from agent.privacy import cli

    return cli.commands


def _hub() -> Sequence[click.Command]:
    from agent.hub import cli

    return cli.commands


def _sync() -> Sequence[click.Command]:
    from agent.sync import cli

    return cli.commands


def _inference() -> Sequence[click.Command]:
    from agent.inference import cli

    return cli.commands


def _analytics() -> Sequence[click.Command]:
    from agent.analytics import cli, validate_cli

    return [*cli.commands, *validate_cli.commands]


def _sensors() -> Sequence[click.Command]:
    from firmware_bridge import cli

    return cli.commands


def _api() -> Sequence[click.Command]:
    from agent.api import cli

    return cli.commands


def _service() -> Sequence[click.Command]:
    from agent.service import cli

    return cli.commands


def _ngsi_ld() -> Sequence[click.Command]:
    from agent.ngsi_ld import cli

    return cli.commands


#: the commands of no single part: the daemon itself (run, config, bench), the store's dump, the
#: privacy report (what every part keeps) and the city's side (the hub is not a part of the unit)
DAEMON = (
    CommandSpec(
        "bench",
        "Benchmark: raw invoke() throughput vs end-to-end pipeline throughput, same model and threads.",
    ),
    CommandSpec("config", "Check or print the configuration."),
    CommandSpec("run", "Run the agent daemon."),
)
DUMP = (
    CommandSpec(
        "dump",
        "Write TABLE (detections, readings, crossings, outbox, ...) to stdout as CSV, a JSON array or NDJSON (one object per line).",
    ),
)
PRIVACY = (
    CommandSpec(
        "privacy", "What this unit keeps and sends about people, and whether it stays within its limits."
    ),
)
HUB = (
    CommandSpec(
        "hub",
        "The city's side: a hub worker stores every unit's summaries, health, events and status in PostgreSQL or SQLite (once each, keyed by device and seq), tracks each unit's seq ranges and repairs gaps with cmd/replay; `hub status` and `hub serve` show the fleet.",
    ),
)

#: name -> (one-line help as `edge-agent --help` shows it, the loader of the module that has it):
#: this module's own commands and each part's (``<part>/clispec.py``, which the part declares
#: through ``Part.commands``), each list with the loader of its module; a name declared twice fails
#: here, at import
COMMANDS: dict[str, tuple[str, Loader]] = table(
    [
        (DAEMON, _core),
        (DUMP, _dump),
        (PRIVACY, _privacy),
        (HUB, _hub),
        (sync_commands.COMMANDS, _sync),
        (inference_commands.COMMANDS, _inference),
        (analytics_commands.COMMANDS, _analytics),
        (sensor_commands.COMMANDS, _sensors),
        (api_commands.COMMANDS, _api),
        (service_commands.COMMANDS, _service),
        (ngsi_ld_commands.COMMANDS, _ngsi_ld),
    ]
)


class _Group(click.Group):
    """Lists the commands from :data:`COMMANDS` and imports a command's module when it is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        for cmd in entry[1]():
            self.commands.setdefault(cmd.name or "", cmd)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [
            (n, click.Command(n, help=COMMANDS[n][0]).get_short_help_str(limit))
            if n in COMMANDS and n not in self.commands
            else (n, self.commands[n].get_short_help_str(limit))
            for n in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
        except ModuleNotFoundError as exc:
            if exc.name != "cv2":
                raise
            from agent.opencv import MissingOpenCV

            err = MissingOpenCV()
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edge-agent")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """edge-agent: cameras and serial sensors -> TFLite on the edge -> SQLite -> MQTT."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    import agent.parts  # noqa: F401 - every part's tables and sections (only for a command, not --help)
    from agent.service.logsetup import setup_logging

    setup_logging(level)


def main() -> None:
    cli(prog_name="edge-agent")


if __name__ == "__main__":
    main()
