"""The one timestamp format of the store, the summaries and the API: UTC ISO-8601 with milliseconds
and a ``Z`` (``2026-11-23T17:00:00.123Z``). Text of this form sorts in time order."""

from __future__ import annotations

import datetime as _dt


def iso_utc(ts: float) -> str:
    """Seconds since the epoch -> '2026-11-23T17:00:00.123Z' (the one timestamp format in the store)."""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(s: str) -> float:
    """The store's timestamp text (as :func:`iso_utc` writes it; the ``Z`` may be missing) -> seconds
    since the epoch."""
    return (
        _dt.datetime.strptime(s.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
        .replace(tzinfo=_dt.timezone.utc)
        .timestamp()
    )
