"""Serial sensor config. (Placeholder section; the firmware_bridge issue fills it in.)"""

from __future__ import annotations

from pydantic import Field

from agent.configbase import Section


class SensorConfig(Section):
    name: str = Field(..., description="Sensor name.")
