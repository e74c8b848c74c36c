"""Every part of the agent that owns tables, prune steps or summary sections, in one explicit list.

Each of these modules registers what it owns when it is imported (``register_migrations``,
``register_prune_step``, ``register_summary_section``). Importing this module imports them all, with
plain import statements: a missing or misspelt module is an ImportError here, never a part silently
left out. The entry points import it (``edge-agent``, ``python -m agent.sync``, the pipeline, the
tests' conftest); opening a database or building a summary in a process that has not is an error
that names this module (issue #13: no string registries).

Adding a part that owns tables or a summary section: one import line below, plus its module.
"""

from __future__ import annotations

from types import ModuleType

from agent import sections
from agent.analytics import store as analytics_store
from agent.analytics import summary as analytics_summary
from agent.analytics.incidents import store as incidents_store
from agent.ngsi_ld import sink as ngsi_ld_sink
from agent.store import db, schema
from agent.sync import outbox, retention, sections_core
from firmware_bridge import store as sensors_store
from firmware_bridge import summary as sensors_summary

#: the modules, for tools and tests that list them (their import is what registers them)
PARTS: tuple[ModuleType, ...] = (
    schema,
    outbox,
    retention,
    sections_core,
    analytics_store,
    analytics_summary,
    incidents_store,
    ngsi_ld_sink,
    sensors_store,
    sensors_summary,
)

db.parts_loaded()
sections.parts_loaded()
