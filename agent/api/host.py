"""What the local API reads from the running agent: :class:`ApiHost` (the pipeline satisfies it).

The status snapshot comes through :meth:`ApiHost.status`, which the pipeline merges from its parts,
and the liveness snapshot through :meth:`ApiHost.health`; the rest is what the snapshots and the
metrics need (the results stage and its latest results, the cameras' latest frames, the database's
path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.sources.camera import CameraSource
    from agent.stages import ResultsWorker
    from agent.store.db import Database
    from firmware_bridge.service import SensorService


@runtime_checkable
class ApiHost(Protocol):
    @property
    def cfg(self) -> AgentConfig: ...
    @property
    def database(self) -> Database | None: ...
    @property
    def results(self) -> ResultsWorker | None: ...
    @property
    def cameras(self) -> Mapping[str, CameraSource]: ...

    @property
    def sensors(self) -> SensorService | None: ...

    def status(self) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]:
        """``writer_alive`` (bool), ``results_age_s`` (seconds since the results stage last made
        progress, None without one) and ``cameras`` (name -> state): what ``/healthz`` decides on."""
        ...
