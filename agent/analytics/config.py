"""Per-camera analytics config: counting lines, zones and ground-plane calibration.

(Placeholder section; the analytics issue fills it in.)
"""

from __future__ import annotations

from agent.configbase import Section


class CameraAnalytics(Section):
    pass
