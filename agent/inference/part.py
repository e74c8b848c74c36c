"""The cameras + inference part: the ``core`` tables (detections, classifications, stats) and their
prune step. Its stages (cameras, engines, inference workers, the results stage) are the pipeline's own
and run through :class:`VisionHost`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel

from agent.config import InferenceConfig
from agent.inference import clispec
from agent.part import BasePart, CommandSpec, DoctorCheck, Host, Part, PruneStep, Tables
from agent.store import schema
from agent.sync import retention

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.service.doctor_checks.base import Check, Context
    from agent.store.writer import Writer


@runtime_checkable
class VisionHost(Protocol):
    """A host that runs the camera stages itself (the pipeline)."""

    def start_vision(self, writer: Writer) -> None: ...
    def stop_vision(self) -> None: ...
    def vision_status(self) -> Mapping[str, object]: ...


class VisionPart(BasePart):
    name = "cameras"
    config_model: type[BaseModel] = InferenceConfig

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def migrations(self) -> list[Tables]:
        return [Tables(*schema.TABLES)]

    def prune_steps(self) -> list[PruneStep]:
        return [PruneStep(10, "detections", retention.prune_raw_detections)]

    def checks(self) -> list[DoctorCheck]:
        return [DoctorCheck("camera", _camera_checks), DoctorCheck("model", _model_checks)]

    def bind(self, host: Host) -> Part:
        if not isinstance(host, VisionHost):
            raise TypeError("the cameras part runs only in a host that runs the camera stages (the pipeline)")
        return _Running(host)


class _Running(VisionPart):
    def __init__(self, host: VisionHost) -> None:
        self.host = host

    def start(self, writer: Writer) -> None:
        self.host.start_vision(writer)

    def stop(self) -> None:
        self.host.stop_vision()

    def status(self) -> Mapping[str, object]:
        return self.host.vision_status()


def _camera_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.media import camera_checks

    return camera_checks(cfg, ctx)


def _model_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    from agent.service.doctor_checks.media import model_checks

    return model_checks(cfg, ctx)


PART = VisionPart()
