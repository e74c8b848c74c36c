"""Registry of summary sections.

Each analysis part contributes its own section to the periodic summary by registering a function
here at import time; the summary builder (``agent.sync.summary``) calls every registered function
for each window. Adding a part never touches the others.

A section function takes a read connection and the window ``[start, end)`` as UTC ISO-8601 strings
(``2026-11-23T17:00:00.000Z``) and returns a JSON-serialisable dict, or ``None`` to leave the
section out of this window.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from agent.timefmt import iso_utc  # noqa: F401 - re-export for agent/sync/summary.py, agent/hub/ingest.py (other work in flight)

SectionFn = Callable[[sqlite3.Connection, str, str], "dict[str, Any] | None"]

_SECTIONS: dict[str, SectionFn] = {}
_LOCK = threading.Lock()

# Modules that register sections at import (one line per part).
SECTION_MODULES = [
    "agent.sync.sections_core",
    "agent.analytics.summary",
    "agent.analytics.incidents.store",
    "firmware_bridge.summary",
]


def register_summary_section(name: str, fn: SectionFn) -> None:
    with _LOCK:
        _SECTIONS[name] = fn


def summary_sections() -> dict[str, SectionFn]:
    import importlib

    for mod in SECTION_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    with _LOCK:
        return dict(_SECTIONS)
