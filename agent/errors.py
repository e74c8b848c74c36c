"""Errors the agent reports to people.

Every error an installer or technician can meet derives from :class:`AgentError`. Its message
names the problem; ``hint`` says what to do about it. The CLI prints both and exits non-zero,
never a traceback.
"""

from __future__ import annotations


class AgentError(Exception):
    """An error with a message for people and an optional fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class ConfigError(AgentError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class ModelError(AgentError):
    """A model file is missing, corrupt, of an unknown layout or fails to run."""

    exit_code = 3


class AcceleratorError(ModelError):
    """The requested accelerator (delegate) could not be loaded."""


class SourceError(AgentError):
    """A camera or other frame source could not be opened or read."""

    exit_code = 4


class StoreError(AgentError):
    """The local database could not be opened, migrated or written."""

    exit_code = 5
