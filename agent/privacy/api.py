"""``GET /api/privacy``: the privacy report of the running agent, with its live mask counters."""

from __future__ import annotations

from typing import Any


def add_routes(app: Any, server: Any) -> None:
    """Register the privacy route on the API's FastAPI app (``server``: the ``ApiServer``)."""
    pipe = server.pipeline

    @app.get(
        "/api/privacy",
        response_model=dict[str, Any],
        summary="What is stored, for how long, what leaves the unit; masks and blur in force",
    )
    def privacy_report() -> dict[str, Any]:
        """The report of `edge-agent privacy report` (``ok`` false when a privacy limit is exceeded),
        with each camera's live mask counters (frames masked, detections dropped)."""
        from agent.privacy.masks import pipeline_masks
        from agent.privacy.report import build_report

        live = {name: ms.status() for name, ms in pipeline_masks(pipe).items()}
        return build_report(pipe.cfg, live_masks=live)
