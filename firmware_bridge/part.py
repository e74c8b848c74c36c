"""The sensors part: readings tables, their prune step, the ``sensors`` and ``gps`` summary sections
and, running, :class:`~firmware_bridge.service.SensorService` (one thread per serial sensor). It
reaches the agent's core only through :mod:`agent.part`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel

from agent.part import BasePart, CommandSpec, DoctorCheck, Host, Part, PruneStep, SummarySection, Tables
from firmware_bridge import clispec, store, summary
from firmware_bridge.config import SensorConfig

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.service.doctor_checks.base import Check, Context
    from agent.store.writer import Writer
    from firmware_bridge.service import SensorService

#: ``fn(messages, received_ts)``, called on the sensor's thread with every batch it decodes
Listener = Callable[[list[object], float], None]


@runtime_checkable
class ListeningHost(Protocol):
    """A host with listeners for sensors' messages (the pipeline: radar feeds of cameras' analytics)."""

    def sensor_listeners(self) -> list[tuple[str, str, Listener]]:
        """``(sensor, listener's name for errors, listener)``."""
        ...


class SensorsPart(BasePart):
    name = "sensors"
    config_model: type[BaseModel] = SensorConfig

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def migrations(self) -> list[Tables]:
        return [Tables(*store.TABLES)]

    def prune_steps(self) -> list[PruneStep]:
        # raw readings already summarised go right after raw detections
        return [PruneStep(20, "sensor readings", store._prune_readings)]

    def sections(self) -> list[SummarySection]:
        return [
            SummarySection("sensors", summary.sensors_section),
            SummarySection("gps", summary.gps_section),
        ]

    def checks(self) -> list[DoctorCheck]:
        return [DoctorCheck("sensor", _sensor_checks)]

    def bind(self, host: Host) -> Part:
        return RunningSensors(host)


class RunningSensors(SensorsPart):
    def __init__(self, host: Host) -> None:
        self.host = host
        self.service: SensorService | None = None

    def start(self, writer: Writer) -> None:
        from firmware_bridge.service import SensorService

        sensors = self.host.cfg.sensors
        if not sensors:
            return
        self.service = SensorService(sensors, writer)
        if isinstance(self.host, ListeningHost):
            for sensor, who, fn in self.host.sensor_listeners():
                try:
                    self.service.add_listener(sensor, fn)
                except KeyError:
                    import logging

                    logging.getLogger(__name__).error(
                        "%s: sensor %r is not configured or not enabled", who, sensor
                    )
        self.service.start()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(timeout_s=5.0)

    def status(self) -> Mapping[str, object]:
        if self.service is None:
            return {}
        try:
            return {"sensors": self.service.health()}
        except Exception as exc:  # noqa: BLE001 - a status read must not fail
            return {"sensors": {"error": str(exc)}}


def _sensor_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    """Each serial sensor answers with a valid frame (the doctor's check, loaded when doctor runs)."""
    from agent.service.doctor_checks.sensors import sensor_checks

    return sensor_checks(cfg, ctx)


PART = SensorsPart()
