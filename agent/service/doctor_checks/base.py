"""What a doctor check is and what it returns.

A :class:`Check` is a name, a group (``camera``, ``model``, ``sensor``, ``broker``, ``clock``,
``disk``, ``database``, ``permissions``, ``config``), a deadline and a function returning a
:class:`Result`. A function may also raise :class:`~agent.errors.AgentError`: the runner turns it
into a failed result with the error's message and hint, so the library's own errors (a camera that
will not open, a corrupt model) reach the installer word for word.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)


@dataclass
class Result:
    """One line of the report: ``status`` with a one-line ``detail`` and, for warn/fail, a ``hint``."""

    status: str
    detail: str
    hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}")


def ok(detail: str, **data: Any) -> Result:
    return Result(OK, detail, None, data)


def warn(detail: str, hint: str, **data: Any) -> Result:
    return Result(WARN, detail, hint, data)


def fail(detail: str, hint: str, **data: Any) -> Result:
    return Result(FAIL, detail, hint, data)


def skip(detail: str, **data: Any) -> Result:
    return Result(SKIP, detail, None, data)


@dataclass
class Check:
    name: str  # unique in a report, e.g. "camera:north"
    group: str  # what --only selects, e.g. "camera"
    run: Callable[[], Result]
    timeout_s: float


@dataclass
class Context:
    """What checks share: the doctor's options and facts one check learns for another (GPS time)."""

    timeout_s: float
    user: str | None = None  # the service user to check permissions for (None: default rule)
    gps: dict[str, Any] | None = None
    gps_done: threading.Event = field(default_factory=threading.Event)
