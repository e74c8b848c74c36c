"""The one face every part of the agent shows: :class:`Part` (issue #13).

A part (cameras + inference, analytics, sensors, sync, the NGSI-LD sink, api, service, or a plugin)
declares, as typed records, what it owns: its tables (:class:`Tables`), what retention may delete
(:class:`~agent.sync.retention.PruneStep`), its summary sections (:class:`SummarySection`), its
``edge-agent`` commands (:class:`~agent.clispec.CommandSpec`, listed in ``<part>/clispec.py``: a
name, a help line and a loader, so ``--help`` imports nothing heavy) and its doctor checks
(:class:`DoctorCheck`). :mod:`agent.parts` holds THE list of parts and installs their declarations; the pipeline binds each part to the running unit
(:meth:`Part.bind`), starts them in list order, stops them in reverse and merges their
:meth:`Part.status` into the status snapshot that the API, health messages and ``edge-agent status``
read.

A part with nothing to run or declare inherits :class:`BasePart` and overrides only what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel

from agent.clispec import CommandSpec
from agent.sections import CursorFn, SectionFn
from agent.store.db import Migration
from agent.sync.retention import PruneStep

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.service.doctor_checks.base import Check, Context
    from agent.store.writer import Writer

__all__ = [
    "BasePart",
    "CommandSpec",
    "DoctorCheck",
    "Host",
    "Migration",
    "NoConfig",
    "Part",
    "PruneStep",
    "SummarySection",
    "Tables",
]


@dataclass(frozen=True)
class Tables:
    """A part's tables: its migrations under its own component name (the ``_migrations`` key, which
    existing databases already carry, so a component is never renamed)."""

    component: str
    migrations: Sequence[Migration]


@dataclass(frozen=True)
class SummarySection:
    """One section of the periodic summary: ``fn(conn, start, end)`` returns a dict or None. A section
    that sends rows by change (not by time) names its ``sync_state`` key and its cursor."""

    name: str
    fn: SectionFn
    cursor_key: str | None = None
    cursor: CursorFn | None = None

    def __post_init__(self) -> None:
        if (self.cursor_key is None) != (self.cursor is None):
            raise ValueError(f"summary section {self.name!r}: give both cursor_key and cursor, or neither")


@dataclass(frozen=True)
class DoctorCheck:
    """A group of ``edge-agent doctor`` checks: ``build(cfg, ctx)`` returns the checks to run."""

    group: str
    build: Callable[[AgentConfig, Context], list[Check]]
    after: bool = False  # run after the others (the clock waits for what the GPS check learned)


class Host(Protocol):
    """What a running part may ask of the unit it runs in (the pipeline)."""

    @property
    def cfg(self) -> AgentConfig: ...

    def status(self) -> Mapping[str, object]: ...

    def time_left(self) -> float:
        """Seconds left of the stop deadline (while stopping), for a part's own timeouts."""
        ...


class NoConfig(BaseModel):
    """The config model of a part that has no section of its own."""


@runtime_checkable
class Part(Protocol):
    name: str
    config_model: type[BaseModel]

    def migrations(self) -> list[Tables]: ...
    def prune_steps(self) -> list[PruneStep]: ...
    def sections(self) -> list[SummarySection]: ...
    def commands(self) -> list[CommandSpec]: ...
    def checks(self) -> list[DoctorCheck]: ...
    def bind(self, host: Host) -> Part:
        """The part as it runs in ``host``: a new object holding this run's state (or ``self``)."""
        ...

    def start(self, writer: Writer) -> None: ...
    def stop(self) -> None: ...
    def status(self) -> Mapping[str, object]:
        """What the part adds to the status snapshot, under its own keys (empty: nothing)."""
        ...


class BasePart:
    """Defaults for a :class:`Part`: declares nothing, runs nothing, shows nothing."""

    name: str = "part"
    config_model: type[BaseModel] = NoConfig

    def migrations(self) -> list[Tables]:
        return []

    def prune_steps(self) -> list[PruneStep]:
        return []

    def sections(self) -> list[SummarySection]:
        return []

    def commands(self) -> list[CommandSpec]:
        return []

    def checks(self) -> list[DoctorCheck]:
        return []

    def bind(self, host: Host) -> Part:
        return self

    def start(self, writer: Writer) -> None:
        return None

    def stop(self) -> None:
        return None

    def status(self) -> Mapping[str, object]:
        return {}
