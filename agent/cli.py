"""The one entry point: ``edge-agent``. Thin: parses, calls the library, turns errors into messages.

Each part of the agent keeps its commands next to its code (``agent.inference.cli``,
``agent.sync.cli``, ...) as a module-level ``commands`` list; they are registered here, in one place.
"""

from __future__ import annotations

import importlib
import logging
import sqlite3
import sys

import click

from agent import __version__
from agent.errors import AgentError, StoreError

# Modules contributing commands (each has `commands: list[click.Command]`).
_COMMAND_MODULES = [
    "agent.core_cli",
    "agent.inference.cli",
    "agent.sync.cli",
    "agent.hub.cli",
    "agent.analytics.cli",
    "agent.analytics.validate_cli",
    "firmware_bridge.cli",
    "agent.api.cli",
    "agent.service.cli",
    "agent.privacy.cli",
    "agent.ngsi_ld.cli",
    "agent.store.dump_cli",
]


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
    from agent.service.logsetup import setup_logging

    setup_logging(level)


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built yet
                continue
            raise
        for cmd in getattr(mod, "commands", []):
            cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="edge-agent")


if __name__ == "__main__":
    main()
