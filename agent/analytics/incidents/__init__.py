"""Road-safety incidents on the device: wrong-way drivers, stopped vehicles, people on the
carriageway and queues, raised from the tracks of the analytics part; radar speeds fused onto
tracks. See ``docs/incidents.md``."""

from agent.analytics.incidents.config import IncidentRule, RadarFusionConfig
from agent.analytics.incidents.engine import IncidentEngine

__all__ = ["IncidentEngine", "IncidentRule", "RadarFusionConfig"]
