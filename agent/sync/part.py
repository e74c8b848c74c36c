"""The sync part: the outbox and sync state tables, the core prune step (delivered messages), the
core summary sections (counts, inference, health) and, running, :class:`SyncService` (store and
forward to the city's broker), whose health is the ``sync`` key of the status snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.part import BasePart, CommandSpec, DoctorCheck, Host, Part, PruneStep, SummarySection, Tables
from agent.sync import clispec, outbox, outbox_schema, sections_core
from agent.sync.config import MqttConfig

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.service.doctor_checks.base import Check, Context
    from agent.store.writer import Writer
    from agent.sync.service import SyncService


class SyncPart(BasePart):
    name = "sync"
    config_model: type[BaseModel] = MqttConfig

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def migrations(self) -> list[Tables]:
        return [Tables(*outbox_schema.TABLES)]

    def prune_steps(self) -> list[PruneStep]:
        # step 90 (undelivered summaries) needs the device's topics: added by Retention itself
        return [PruneStep(50, "delivered messages", outbox.prune_delivered)]

    def sections(self) -> list[SummarySection]:
        return [
            SummarySection("counts", sections_core.counts_section),
            SummarySection("inference", sections_core.inference_section),
            SummarySection("health", sections_core.health_section),
        ]

    def checks(self) -> list[DoctorCheck]:
        return [DoctorCheck("broker", _broker_checks)]

    def bind(self, host: Host) -> Part:
        return RunningSync(host)


class RunningSync(SyncPart):
    """The sink is always built: it buffers in the outbox while MQTT is off."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.service: SyncService | None = None

    def start(self, writer: Writer) -> None:
        from agent.sync.service import SyncService

        cfg = self.host.cfg
        self.service = SyncService(cfg, cfg.storage.path, writer, status=lambda: dict(self.host.status()))
        self.service.start()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(max(1.0, min(10.0, self.host.time_left())))

    def status(self) -> Mapping[str, object]:
        if self.service is None:
            return {}
        try:
            return {"sync": self.service.health()}
        except Exception as exc:  # noqa: BLE001 - a status read must not fail
            return {"sync": {"error": str(exc)}}


def _broker_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.broker import broker_checks

    return broker_checks(cfg, ctx)


PART = SyncPart()
