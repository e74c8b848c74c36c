"""The NGSI-LD sink part: retention of the messages it has delivered."""

from __future__ import annotations

from pydantic import BaseModel

from agent.ngsi_ld import clispec, sink
from agent.ngsi_ld.config import NgsiLdConfig
from agent.part import BasePart, CommandSpec, PruneStep


class NgsiLdPart(BasePart):
    name = "ngsi_ld"
    config_model: type[BaseModel] = NgsiLdConfig

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def prune_steps(self) -> list[PruneStep]:
        return [PruneStep(55, "delivered sink messages", sink.prune_delivered)]


PART = NgsiLdPart()
