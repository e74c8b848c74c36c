"""The local API part: runs :class:`~agent.api.server.ApiServer` (FastAPI and uvicorn, imported only
when the API runs) beside the pipeline. A port in use or an unwritable token file is logged and the
rest of the agent keeps running."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agent.api import clispec
from agent.api.config import ApiConfig
from agent.api.host import ApiHost
from agent.errors import AgentError
from agent.part import BasePart, CommandSpec, Host, Part

if TYPE_CHECKING:
    from agent.api.server import ApiServer
    from agent.store.writer import Writer

log = logging.getLogger(__name__)


class ApiPart(BasePart):
    name = "api"
    config_model: type[BaseModel] = ApiConfig

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def bind(self, host: Host) -> Part:
        return RunningApi(host)


class RunningApi(ApiPart):
    def __init__(self, host: Host) -> None:
        self.host = host
        self.server: ApiServer | None = None

    def start(self, writer: Writer) -> None:
        cfg = self.host.cfg
        if not cfg.api.enabled:
            return
        from agent.api.server import ApiServer

        if not isinstance(self.host, ApiHost):
            raise TypeError("the API part runs only in a host that has what the API reads (the pipeline)")
        try:
            self.server = ApiServer(cfg, self.host)
            self.server.start()
        except AgentError as exc:
            log.error("local API not started: %s", exc)
            self.server = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


PART = ApiPart()
