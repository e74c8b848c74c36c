"""The checks of ``edge-agent doctor``, one module per area (see :mod:`agent.service.doctor`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.service.doctor_checks.base import Check, Context

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.part import Part

GROUPS = (
    "config",
    "camera",
    "model",
    "sensor",
    "broker",
    "clock",
    "disk",
    "database",
    "permissions",
    "privacy",
    "service",
)


def build_checks(cfg: AgentConfig, ctx: Context, parts: Sequence[Part]) -> tuple[list[Check], list[Check]]:
    """(checks that run together, checks that run after them: the clock, which waits for the GPS),
    as the parts declare them, in the order of :data:`GROUPS`."""
    declared = sorted(
        (d for part in parts for d in part.checks()),
        key=lambda d: GROUPS.index(d.group) if d.group in GROUPS else len(GROUPS),
    )
    first = [c for d in declared if not d.after for c in d.build(cfg, ctx)]
    after = [c for d in declared if d.after for c in d.build(cfg, ctx)]
    return first, after
