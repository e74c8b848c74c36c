"""Local API and privacy settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.configbase import Section


class ApiConfig(Section):
    enabled: bool = Field(True, description="Serve the local HTTP API and status page.")
    bind: str = Field("127.0.0.1", description="Address to listen on. Any address other than loopback requires the bearer token.")
    port: int = Field(8754, ge=1, le=65535, description="TCP port.")


class PrivacyConfig(Section):
    blur: Literal["people", "faces", "off"] = Field("people", description="What is blurred in snapshots.")
