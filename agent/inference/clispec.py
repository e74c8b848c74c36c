"""The cameras + inference part's ``edge-agent`` commands: name and help line, known without importing them
(:class:`agent.clispec.CommandSpec`). The part declares them (``Part.commands``); ``agent/cli.py``
lists them and imports their module only when one of them runs."""

from __future__ import annotations

from agent.clispec import CommandSpec

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "classify", "Classify PATH (an image, a folder of images or a video): the top-k classes, best first."
    ),
    CommandSpec("detect", "Detect objects in PATH (an image, a folder of images or a video)."),
    CommandSpec("models", "List, install (pull) and verify catalog models and sample media."),
)
