"""The service part (systemd, doctor, provisioning): no tables or stages of its own; the unit-wide
doctor checks (disk, database, permissions, privacy, the service, the clock)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.part import BasePart, CommandSpec, DoctorCheck
from agent.service import clispec

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.service.doctor_checks.base import Check, Context


class ServicePart(BasePart):
    name = "service"

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def checks(self) -> list[DoctorCheck]:
        return [
            DoctorCheck("disk", _storage_checks),
            DoctorCheck("permissions", _permission_checks),
            DoctorCheck("privacy", _privacy_checks),
            DoctorCheck("service", _service_checks),
            # after the others: it waits for what the GPS check learned
            DoctorCheck("clock", _clock_check, after=True),
        ]


def _storage_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.system import storage_checks

    return storage_checks(cfg, ctx)


def _permission_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.system import permission_checks

    return permission_checks(cfg, ctx)


def _privacy_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.privacy import privacy_checks

    return privacy_checks(cfg, ctx)


def _service_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.service import service_checks

    return service_checks(cfg, ctx)


def _clock_check(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.system import clock_check

    return [clock_check(cfg, ctx)]


PART = ServicePart()
