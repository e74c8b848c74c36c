"""The hub contract: the strict JSON Schemas of every payload, generated from this package.

``python -m agent.sync.contract`` writes ``docs/schemas/*.schema.json``; a test keeps the committed
files equal to what this package builds, and ``scripts/mqtt_docs.py`` turns them into the field tables
of ``docs/mqtt.md``. Every field has a type, a meaning, a unit where it has one (``x-unit``) and says
whether it may be null. Objects whose shape is ours have ``additionalProperties: false``; maps keyed
by names (cameras, lines, labels, sensors, metrics) declare their value schema.

The parts: ``fields`` (the builders, the envelope and the document), one module per message kind
(``summary``, ``health``, ``events``, ``status``, ``commands``) and the summary's larger sections
(``analytics``, ``sensors``).

Versioning (semver, ``schema_version`` in every payload, the major also in ``schema``):
MAJOR: a field removed, renamed, retyped or made required, a meaning changed (the ``schema`` id
changes, e.g. ``edge-agent/summary/2``); MINOR: an optional field, a section or an enum value added
(a strict validator must use the schemas of the message's minor or later, which accept every older
payload); PATCH: descriptions only.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.sync.contract.analytics import analytics_section
from agent.sync.contract.commands import command_schema, reply_schema
from agent.sync.contract.events import event_schema, gap_data, incident_data
from agent.sync.contract.fields import (
    BASE_URI,
    INT0,
    MAJOR,
    NAME,
    TS,
    arr,
    counts_by_class,
    document,
    envelope,
    f,
    mapof,
    obj,
    pct_obj,
    ts,
)
from agent.sync.contract.health import (
    health_readings,
    health_schema,
    model_entry,
    pipeline_projection,
    pipeline_schema,
    sync_brief,
    writer_stats,
)
from agent.sync.contract.sensors import aqi_result, gps_section, sensors_section
from agent.sync.contract.status import status_schema
from agent.sync.contract.summary import (
    counts_section,
    incidents_section,
    inference_section,
    small_counts_declaration,
    summary_schema,
)

__all__ = [
    "BASE_URI",
    "INT0",
    "MAJOR",
    "NAME",
    "SCHEMAS",
    "TS",
    "analytics_section",
    "aqi_result",
    "arr",
    "build",
    "command_schema",
    "counts_by_class",
    "counts_section",
    "document",
    "envelope",
    "event_schema",
    "f",
    "gap_data",
    "gps_section",
    "health_readings",
    "health_schema",
    "incident_data",
    "incidents_section",
    "inference_section",
    "main",
    "mapof",
    "model_entry",
    "obj",
    "pct_obj",
    "pipeline_projection",
    "pipeline_schema",
    "render",
    "reply_schema",
    "sensors_section",
    "small_counts_declaration",
    "status_schema",
    "summary_schema",
    "sync_brief",
    "ts",
    "writer_stats",
]

SCHEMAS = {
    "summary": summary_schema,
    "health": health_schema,
    "event": event_schema,
    "status": status_schema,
    "command": command_schema,
    "reply": reply_schema,
}


def build() -> dict[str, dict]:
    return {k: fn() for k, fn in SCHEMAS.items()}


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:  # python -m agent.sync.contract [DIR]: write the schemas
    import sys

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "docs" / "schemas"
    out.mkdir(parents=True, exist_ok=True)
    for kind, schema in build().items():
        (out / f"{kind}.schema.json").write_text(render(schema))
        print(f"wrote {out / f'{kind}.schema.json'}")
