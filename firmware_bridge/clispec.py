"""The sensors part's ``edge-agent`` commands: name and help line, known without importing them
(:class:`agent.clispec.CommandSpec`). The part declares them (``Part.commands``); ``agent/cli.py``
lists them and imports their module only when one of them runs."""

from __future__ import annotations

from agent.clispec import CommandSpec

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("aqi", "US EPA Air Quality Index from PM2.5 and/or PM10."),
    CommandSpec(
        "readings",
        "Sensor readings, oldest first: from the running agent's API or, when it does not answer, the local database (read-only); stderr says which one answered.",
    ),
    CommandSpec("sensors", "Serial sensor tools."),
    CommandSpec(
        "simulate-serial",
        "Create a pseudo-terminal speaking DEVICE's protocol; point a sensor's `port` at --link.",
    ),
)
