"""The service part's ``edge-agent`` commands: name and help line, known without importing them
(:class:`agent.clispec.CommandSpec`). The part declares them (``Part.commands``); ``agent/cli.py``
lists them and imports their module only when one of them runs."""

from __future__ import annotations

from agent.clispec import CommandSpec

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "doctor",
        "Check that this unit works: cameras, models, sensors, broker, clock, disk, database, permissions.",
    ),
    CommandSpec(
        "provision",
        "Write this unit's config (and API token) from a bundle and/or flags, after checking all of it.",
    ),
    CommandSpec("token", "Show or rotate the local API's bearer token."),
)
