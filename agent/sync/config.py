"""MQTT and summary settings. (Placeholder section; the sync issue fills it in.)"""

from __future__ import annotations

from pydantic import Field

from agent.configbase import Section


class MqttConfig(Section):
    enabled: bool = Field(False, description="Sync to an MQTT broker.")


class SummaryConfig(Section):
    interval_s: float = Field(60.0, gt=0, description="Length of a summary window in seconds.")
