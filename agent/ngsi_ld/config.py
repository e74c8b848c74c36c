"""The ``[ngsi_ld]`` config section: a context broker that receives our entities."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.configbase import Section


class NgsiLdConfig(Section):
    enabled: bool = Field(
        False, description="Send TrafficFlowObserved and AirQualityObserved to an NGSI-LD context broker."
    )
    url: str = Field(
        "http://127.0.0.1:1026",
        description="Base URL of the context broker (Orion-LD, Scorpio, Stellio); the sink POSTs to URL/ngsi-ld/v1/entityOperations/upsert.",
        examples=["https://broker.city.example"],
    )
    tenant: str | None = Field(None, description="NGSILD-Tenant header (none: the default tenant).")
    token_file: Path | None = Field(
        None, description="File holding a bearer token for the Authorization header (none: no auth)."
    )
    form: Literal["normalized", "keyValues"] = Field(
        "normalized", description="Representation sent (keyValues adds ?options=keyValues)."
    )
    batch_size: int = Field(100, ge=1, le=1000, description="Entities per upsert request.")
    interval_s: float = Field(
        60.0, gt=0, description="How often new bins and hours are turned into entities and sent."
    )
    lookback_s: float = Field(3600.0, ge=0, description="At the first start: how far back to export.")
    timeout_s: float = Field(
        10.0, gt=0, description="HTTP timeout per request (a hanging broker is retried)."
    )
    retry_initial_s: float = Field(1.0, gt=0, description="First retry delay after a failed request.")
    retry_max_s: float = Field(
        300.0, gt=0, description="Longest retry delay (exponential backoff with jitter)."
    )
    types: list[Literal["TrafficFlowObserved", "AirQualityObserved"]] = Field(
        ["TrafficFlowObserved", "AirQualityObserved"], description="Entity types sent."
    )
