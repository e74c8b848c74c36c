"""Typed rows from a message: the documented keys of a payload (docs/mqtt.md), checked one by one.

Pure functions, no database: a value of the wrong type is left out (it stays in the stored JSON),
never guessed. :func:`summary_rows` gives a summary's volume, bin and AQI rows; :func:`event_row`
an event's row and the range a ``gap`` event reports lost; :func:`device_facts` what a summary or a
health message says about its unit now. :class:`Msg` is one message as the ingest parsed it;
:mod:`agent.hub.ingest` stores the rows.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import Any

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
MAX_SEQ = 2**62

Row = tuple[Any, ...]


@dataclass
class Msg:
    """One message as parsed by the ingest: its device, kind, JSON and text (``seq`` for the kinds
    that carry one, ``command`` for a reply)."""

    key: tuple[str, str]
    kind: str
    doc: dict[str, Any]
    text: str
    retained: bool = False
    command: str | None = None
    seq: int | None = None


# -- values -----------------------------------------------------------------------------------------


def ts_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and _TS.match(v) else None


def as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and abs(v) < MAX_SEQ else None


def as_num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def as_str(v: Any, limit: int = 200) -> str | None:
    return v.replace("\x00", "")[:limit] if isinstance(v, str) else None


def as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def epoch(iso: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def seconds_between(a: str | None, b: str | None) -> int | None:
    if not (a and b):
        return None
    try:
        f = _dt.datetime.fromisoformat
        return round((f(b.replace("Z", "+00:00")) - f(a.replace("Z", "+00:00"))).total_seconds())
    except ValueError:
        return None


# -- a summary ----------------------------------------------------------------------------------------


def summary_rows(site: str, device: str, seq: int, doc: dict[str, Any]) -> dict[str, list[Row]]:
    """Volumes per window, bins and AQI rows of one summary.

    ``volumes``: one row per window count. ``bins``: one ``(site, device, camera, start, rev, seq,
    rows)`` per bin in the message, ``rows`` its volume rows; a bin is stored whole and replaced whole
    by a newer version (:func:`agent.hub.tables.replace_bins`)."""
    out: dict[str, list[Row]] = {"volumes": [], "bins": [], "aqi": []}
    sections = as_dict(doc.get("sections"))
    window = as_dict(doc.get("window"))
    w_start, w_end = ts_or_none(window.get("start")), ts_or_none(window.get("end"))
    w_s = seconds_between(w_start, w_end)
    for cam, c in as_dict(as_dict(sections.get("analytics")).get("cameras")).items():
        c = as_dict(c)
        if w_start:
            _window_volumes(out["volumes"], site, device, seq, cam, c.get("volumes"), w_start, w_s)
        for b in c.get("bins") or []:
            one = _bin(site, device, seq, cam, as_dict(b))
            if one is not None:
                out["bins"].append(one)
    ts = w_end or ts_or_none(doc.get("ts"))
    out["aqi"] = _aqi_rows(site, device, seq, ts, as_dict(sections.get("sensors")))
    return out


def _window_volumes(
    out: list[Row], site: str, device: str, seq: int, cam: str, volumes: Any, start: str, bin_s: int | None
) -> None:
    """The window's count rows of a camera (``{line: {direction: {class: n}}}``), added to ``out``."""
    for line, dirs in as_dict(volumes).items():
        for d, classes in as_dict(dirs).items():
            for cls, n in as_dict(classes).items():
                if as_int(n) is not None:
                    out.append((site, device, seq, cam, line, d, cls, "window", start, bin_s, n, None, None))


def _bin(site: str, device: str, seq: int, cam: str, b: dict[str, Any]) -> Row | None:
    """One bin of a camera: ``(site, device, camera, start, rev, seq, rows)``; None without a start."""
    start = ts_or_none(b.get("start"))
    if not start:
        return None
    minutes = as_int(b.get("minutes"))
    rev = as_int(b.get("rev"))
    bin_s = minutes * 60 if minutes else None
    coverage = as_num(b.get("coverage"))
    rows = []
    for line, dirs in as_dict(b.get("counts")).items():
        for d, classes in as_dict(dirs).items():
            for cls, n in as_dict(classes).items():
                if as_int(n) is not None:
                    rows.append((site, device, seq, cam, line, d, cls, "bin", start, bin_s, n, coverage, rev))
    return (site, device, cam, start, rev, seq, rows)


def _aqi_rows(site: str, device: str, seq: int, ts: str | None, sensors: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for sensor, a in _aqi_by_sensor(sensors):
        if as_int(a.get("aqi")) is None:
            continue
        out.append(
            (
                site,
                device,
                seq,
                ts,
                sensor,
                a["aqi"],
                as_str(a.get("category")),
                as_str(a.get("dominant")),
                as_str(a.get("table")),
                as_num(a.get("pm2_5")),
                as_num(a.get("pm10")),
            )
        )
    return out


def _aqi_by_sensor(sensors: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(sensor, AQI) pairs from either contract: 2.x ``{sensor: {aqi: {table, current: {...}}}}``
    (the current, NowCast AQI) or 1.x ``{aqi: {sensor: {...}}}``."""
    if "aqi" in sensors and not isinstance(as_dict(sensors.get("aqi")).get("current"), dict):
        return [(k, as_dict(v)) for k, v in as_dict(sensors.get("aqi")).items()]  # contract 1.x
    out = []
    for name, sens in sensors.items():
        a = as_dict(as_dict(sens).get("aqi"))
        cur = as_dict(a.get("current"))
        if cur:
            out.append((name, {**cur, "table": a.get("table")}))
    return out


# -- an event -----------------------------------------------------------------------------------------


def event_lost(site: str, device: str, data: dict[str, Any], now: str) -> Row | None:
    """The ``lost`` row of a ``gap`` event: the range the unit no longer stores, or None."""
    a, b = as_int(data.get("from_seq")), as_int(data.get("to_seq"))
    if a and b and b >= a:
        return (site, device, a, b, as_str(data.get("reason"), 500) or "pruned", now)
    return None


# -- what a message says about its unit ----------------------------------------------------------------


def device_facts(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """What a message says about its unit now: backlog, clock trust, accelerator."""
    if kind == "summary":
        return _summary_facts(as_dict(doc.get("sections")), doc.get("clock_synced"))
    f: dict[str, Any] = {}
    if kind == "health":
        b = as_int(as_dict(doc.get("sync")).get("backlog"))
        if b is not None:
            f["backlog"] = b
        cs = as_dict(doc.get("health")).get("clock_synced")
        if isinstance(cs, bool):
            f["clock_synced"] = cs
    return f


def _summary_facts(sections: dict[str, Any], clock_synced: Any) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if isinstance(clock_synced, bool):
        f["clock_synced"] = clock_synced
    b = as_int(as_dict(sections.get("health")).get("outbox_backlog"))
    if b is not None:
        f["backlog"] = b
    gps = as_dict(sections.get("gps")) or as_dict(as_dict(sections.get("sensors")).get("gps"))  # 2.x, 1.x
    if isinstance(gps.get("clock_trusted"), bool):
        f["clock_trusted"] = gps["clock_trusted"]
    for c in as_dict(as_dict(sections.get("inference")).get("cameras")).values():
        acc = as_str(as_dict(c).get("accelerator"))
        if acc:
            f["accelerator"] = acc
            break
    return f
