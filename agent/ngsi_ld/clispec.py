"""The NGSI-LD part's ``edge-agent`` commands: name and help line, known without importing them
(:class:`agent.clispec.CommandSpec`). The part declares them (``Part.commands``); ``agent/cli.py``
lists them and imports their module only when one of them runs."""

from __future__ import annotations

from agent.clispec import CommandSpec

COMMANDS: tuple[CommandSpec, ...] = (CommandSpec("export", "Export stored data in standard formats."),)
