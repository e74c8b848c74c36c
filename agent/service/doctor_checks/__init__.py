"""The checks of ``edge-agent doctor``, one module per area (see :mod:`agent.service.doctor`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.service.doctor_checks.base import Check, Context
from agent.service.doctor_checks.broker import broker_checks
from agent.service.doctor_checks.media import camera_checks, model_checks
from agent.service.doctor_checks.privacy import privacy_checks
from agent.service.doctor_checks.sensors import sensor_checks
from agent.service.doctor_checks.service import service_checks
from agent.service.doctor_checks.system import clock_check, permission_checks, storage_checks

if TYPE_CHECKING:
    from agent.config import AgentConfig

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


def build_checks(cfg: AgentConfig, ctx: Context) -> tuple[list[Check], list[Check]]:
    """(checks that run together, checks that run after them: the clock, which waits for the GPS)."""
    first = (
        camera_checks(cfg, ctx)
        + model_checks(cfg, ctx)
        + sensor_checks(cfg, ctx)
        + broker_checks(cfg, ctx)
        + storage_checks(cfg, ctx)
        + permission_checks(cfg, ctx)
        + privacy_checks(cfg, ctx)
        + service_checks(cfg, ctx)
    )
    return first, [clock_check(cfg, ctx)]
