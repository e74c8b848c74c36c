"""The analytics part: counting, speed and bins tables, incidents, their prune steps and the
``analytics`` and ``incidents`` summary sections. Its runners live with the cameras (one per
camera, fed by the results stage), so it runs nothing of its own."""

from __future__ import annotations

from pydantic import BaseModel

from agent.analytics import clispec, store, summary
from agent.analytics.config import CameraAnalytics
from agent.analytics.incidents import store as incidents
from agent.part import BasePart, CommandSpec, PruneStep, SummarySection, Tables


class AnalyticsPart(BasePart):
    name = "analytics"
    config_model: type[BaseModel] = CameraAnalytics

    def commands(self) -> list[CommandSpec]:
        return list(clispec.COMMANDS)

    def migrations(self) -> list[Tables]:
        return [Tables(*store.TABLES), Tables(*incidents.TABLES)]

    def prune_steps(self) -> list[PruneStep]:
        # per-track rows already summarised go after detections and readings; ended incidents after them
        return [PruneStep(30, "track events", store._prune_raw), PruneStep(35, "incidents", incidents._prune)]

    def sections(self) -> list[SummarySection]:
        return [
            SummarySection("analytics", summary.analytics_section, store.SUMMARY_MARK, summary.bins_cursor),
            SummarySection(
                "incidents", incidents.incidents_section, incidents.RADAR_MARK, incidents.radar_cursor
            ),
        ]


PART = AnalyticsPart()
