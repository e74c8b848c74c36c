"""THE list of the agent's parts (issue #13), in start order; the pipeline stops them in reverse.

Each part (:class:`agent.part.Part`) declares its tables, prune steps, summary sections, commands
and doctor checks; importing this module imports every part with plain import statements (a missing
or misspelt module is an ImportError here, never a part silently left out) and installs what they
declare into the database's migrations, retention's steps and the summary builder's sections. The
entry points import it (``edge-agent``, ``python -m agent.sync``, the pipeline, the tests' conftest);
opening a database or building a summary in a process that has not is an error that names this
module. There are no string registries.

Adding a part: its package gets a ``part.py`` with a ``PART`` object, and one line below.
A plugin outside the tree (a test, a site's own part) is installed with :func:`install` and handed to
``Pipeline(cfg, parts=PARTS + (plugin,))``.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent import sections
from agent.analytics import part as analytics
from agent.api import part as api
from agent.inference import part as cameras
from agent.ngsi_ld import part as ngsi_ld
from agent.part import Part
from agent.service import part as service
from agent.store import db
from agent.sync import part as sync
from agent.sync import retention
from firmware_bridge import part as sensors

#: the parts, in start order: store (the pipeline's own) -> sync -> cameras + inference -> analytics
#: -> sensors -> the NGSI-LD sink -> api -> service
PARTS: tuple[Part, ...] = (
    sync.PART,
    cameras.PART,
    analytics.PART,
    sensors.PART,
    ngsi_ld.PART,
    api.PART,
    service.PART,
)


def install(parts: Iterable[Part]) -> None:
    """Register what ``parts`` declare: tables, prune steps, summary sections (idempotent)."""
    for part in parts:
        for tables in part.migrations():
            db.register_migrations(tables.component, tables.migrations)
        for step in part.prune_steps():
            retention.register_prune_step(step.order, step.name, step.fn)
        for section in part.sections():
            sections.register_summary_section(section.name, section.fn)
            if section.cursor_key is not None and section.cursor is not None:
                sections.register_summary_cursor(section.name, section.cursor_key, section.cursor)


install(PARTS)
db.parts_loaded()
sections.parts_loaded()


def uninstall(parts: Iterable[Part]) -> None:
    """Forget what :func:`install` registered for ``parts`` (a plugin's test cleaning up after itself;
    tables already created stay in the databases that have them)."""
    for part in parts:
        for tables in part.migrations():
            db.forget_migrations(tables.component)
        for step in part.prune_steps():
            retention.forget_prune_step(step.name)
        for section in part.sections():
            sections.forget_summary_section(section.name)
