"""Registry of summary sections.

Each part contributes its sections to the periodic summary by declaring them (``Part.sections``);
:mod:`agent.parts` registers them here; the summary builder (``agent.sync.summary``) calls every registered function
for each window. Adding a part never touches the others.

A section function takes a read connection and the window ``[start, end)`` as UTC ISO-8601 strings
(``2026-11-23T17:00:00.000Z``) and returns a JSON-serialisable dict, or ``None`` to leave the
section out of this window.

Rows that may be committed after the window they belong to was summarised (bins: a crossing is
counted when its track is resolved, the writer batches, a camera lags, a clock steps) are not
selected by time but by change: a section reads its high-water mark with :func:`summary_mark` and
sends what changed after it; its cursor (:func:`register_summary_cursor`) says, on the same snapshot,
up to which change it sent, and the summary builder stores that in ``sync_state`` in the transaction
that queues the summary. A restart resumes exactly there; a failed section does not move its mark.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

SectionFn = Callable[[sqlite3.Connection, str, str], "dict[str, Any] | None"]
#: (read connection, the stored mark) -> the mark after what the section sends on this snapshot
CursorFn = Callable[[sqlite3.Connection, int], int]

_SECTIONS: dict[str, SectionFn] = {}
_CURSORS: dict[str, tuple[str, CursorFn]] = {}  # sync_state key -> (section, cursor)
_LOCK = threading.Lock()

_PARTS_LOADED = False  # set by agent.parts once every part's module has registered its section


def parts_loaded() -> None:
    global _PARTS_LOADED
    _PARTS_LOADED = True


def register_summary_section(name: str, fn: SectionFn) -> None:
    with _LOCK:
        _SECTIONS[name] = fn


def forget_summary_section(name: str) -> None:
    """Drop section ``name`` and its cursors."""
    with _LOCK:
        _SECTIONS.pop(name, None)
        for key in [k for k, (section, _fn) in _CURSORS.items() if section == name]:
            del _CURSORS[key]


def change_cursor(changes: Callable[[sqlite3.Connection, int], list[tuple]], seq_col: int) -> CursorFn:
    """A cursor over ``changes(conn, mark)`` (the rows a section sends, in change order, column
    ``seq_col`` their change number): the new mark is the last row's change number; a database
    without the section's tables keeps its mark."""

    def cursor(conn: sqlite3.Connection, mark: int) -> int:
        try:
            rows = changes(conn, mark)
        except sqlite3.OperationalError:  # the part never ran on this database
            return mark
        return max(mark, rows[-1][seq_col]) if rows else mark

    return cursor


def register_summary_cursor(section: str, key: str, fn: CursorFn) -> None:
    """``section`` sends rows by change after the mark kept in ``sync_state[key]``; ``fn`` gives the new mark."""
    with _LOCK:
        _CURSORS[key] = (section, fn)


def _load() -> None:
    """Summaries need every part's section: a process must have imported :mod:`agent.parts`."""
    if not _PARTS_LOADED:
        raise RuntimeError(
            "the agent's parts are not loaded, so summaries would lack sections: import agent.parts first"
            " (the entry points and the pipeline do)"
        )


def summary_sections() -> dict[str, SectionFn]:
    _load()
    with _LOCK:
        return dict(_SECTIONS)


def summary_cursors() -> dict[str, tuple[str, CursorFn]]:
    _load()
    with _LOCK:
        return dict(_CURSORS)


def summary_mark(conn: sqlite3.Connection, key: str) -> int:
    """The stored high-water mark ``key`` (0 before the first summary, or without the sync tables)."""
    try:
        row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0
