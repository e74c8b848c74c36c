"""The analytics part's ``edge-agent`` commands: name and help line, known without importing them
(:class:`agent.clispec.CommandSpec`). The part declares them (``Part.commands``); ``agent/cli.py``
lists them and imports their module only when one of them runs."""

from __future__ import annotations

from agent.clispec import CommandSpec

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("counts", "Vehicle and pedestrian counts per line, direction and class, in bins."),
    CommandSpec(
        "validate",
        "Count CLIP with the agent's pipeline and compare with hand-counted TRUTH, per line, direction and class: truth, counted, matched, missed and extra (with frames), accuracy.",
    ),
)
