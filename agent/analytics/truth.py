"""Ground truth for ``edge-agent validate``: hand-counted crossings per line and direction.

Two formats (docs/validation.md has the full description):

* JSON (``edge-agent-truth/1``): ``{"clip", "fps", "frames", "frame_size", "lines": [{"name",
  "points", "directions", "crossings": [{"direction", "frame" | "time_s", "until"?, "x"?, "y"?,
  "class"?, "optional"?, "note"?}]}]}``. ``points``/``directions`` let ``validate`` run the line
  without a config.
* CSV with a header row: ``line,direction,frame,...`` (optional columns ``time_s``, ``until``,
  ``x``, ``y``, ``class``, ``optional``, ``note``); one crossing per row. The lines themselves
  then come from the config (or ``--line``).

A crossing is at ``frame`` (or ``time_s`` seconds into the clip). ``until`` marks one that lasts
(someone standing on the line): a count anywhere in ``frame..until`` is right. ``optional``
marks one whose moment cannot be judged (on the line in the first or last frames): counting it
or not is both right.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

FORMAT = "edge-agent-truth/1"


@dataclass
class TruthEvent:
    direction: str
    frame: float
    until: float | None = None
    x: float | None = None
    y: float | None = None
    cls: str | None = None
    optional: bool = False
    note: str | None = None
    obj: str | None = None  # the object's name, the same on every line it crosses (identity figures)


@dataclass
class TruthLine:
    name: str
    points: list[list[float]] | None = None
    directions: tuple[str, str] | None = None
    events: list[TruthEvent] = field(default_factory=list)


@dataclass
class Truth:
    path: Path
    clip: str | None
    fps: float | None
    frames: int | None
    frame_size: tuple[int, int] | None
    lines: dict[str, TruthLine]
    class_groups: dict[str, list[str]]


def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"truth file {path}: {what}",
        "see docs/validation.md for the JSON and CSV formats (crossings per line and direction)",
    )


def _num(v: Any, path: Path, where: str, required: bool = False) -> float | None:
    if v is None or v == "":
        if required:
            raise _bad(path, f"{where}: missing")
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise _bad(path, f"{where}: {v!r} is not a number") from None


def _event(raw: dict, path: Path, where: str, fps: float | None) -> TruthEvent:
    d = raw.get("direction")
    if not d:
        raise _bad(path, f"{where}: no direction")
    frame = _num(raw.get("frame"), path, f"{where}.frame")
    if frame is None:
        t = _num(raw.get("time_s"), path, f"{where}.time_s")
        if t is None:
            raise _bad(path, f"{where}: give frame or time_s")
        if not fps:
            raise _bad(path, f"{where}: time_s needs the clip's fps (the truth file's fps, or the clip)")
        frame = t * fps
    until = _num(raw.get("until"), path, f"{where}.until")
    if until is not None and until < frame:
        raise _bad(path, f"{where}: until ({until:g}) is before frame ({frame:g})")
    opt = raw.get("optional", False)
    if isinstance(opt, str):
        opt = opt.strip().lower() in ("1", "true", "yes", "y")
    return TruthEvent(
        direction=str(d),
        frame=frame,
        until=until,
        x=_num(raw.get("x"), path, f"{where}.x"),
        y=_num(raw.get("y"), path, f"{where}.y"),
        cls=(raw.get("class") or None),
        optional=bool(opt),
        note=raw.get("note") or None,
        obj=str(raw["object"]) if raw.get("object") not in (None, "") else None,
    )


def load_truth(path: str | Path, fps: float | None = None) -> Truth:
    """Read a truth file (``.json`` or ``.csv``); ``ConfigError`` (exit 2) when it is not valid.

    Args:
        path: the file.
        fps: the clip's frame rate, for ``time_s`` when the file does not give one.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"truth file {p} does not exist", "give the annotation file's path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read truth file {p}: {exc}", "check that it is UTF-8 text") from None
    if p.suffix.lower() == ".csv":
        return _load_csv(p, text, fps)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(p, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("lines"), list):
        raise _bad(p, 'no "lines" list')
    fps = _num(doc.get("fps"), p, "fps") or fps
    lines: dict[str, TruthLine] = {}
    for i, ln in enumerate(doc["lines"]):
        if not isinstance(ln, dict) or not ln.get("name"):
            raise _bad(p, f"lines[{i}]: no name")
        dirs = ln.get("directions")
        tl = TruthLine(
            name=str(ln["name"]),
            points=ln.get("points"),
            directions=tuple(dirs) if dirs else None,
        )
        for j, e in enumerate(ln.get("crossings") or []):
            ev = _event(e, p, f"lines[{i}].crossings[{j}]", fps)
            if tl.directions and ev.direction not in tl.directions:
                raise _bad(
                    p,
                    f"lines[{i}].crossings[{j}]: direction {ev.direction!r} is not one of {list(tl.directions)}",
                )
            tl.events.append(ev)
        if tl.name in lines:
            raise _bad(p, f"line {tl.name!r} appears twice")
        lines[tl.name] = tl
    size = doc.get("frame_size")
    return Truth(
        path=p,
        clip=doc.get("clip"),
        fps=fps,
        frames=int(doc["frames"]) if doc.get("frames") else None,
        frame_size=(int(size[0]), int(size[1])) if size else None,
        lines=lines,
        class_groups=dict(doc.get("class_groups") or {}),
    )


def _load_csv(p: Path, text: str, fps: float | None) -> Truth:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise _bad(p, "no rows (a header line, then one crossing per row)")
    missing = {"line", "direction"} - set(rows[0])
    if missing:
        raise _bad(p, f"the header lacks {', '.join(sorted(missing))}")
    lines: dict[str, TruthLine] = {}
    for i, r in enumerate(rows, start=2):
        name = (r.get("line") or "").strip()
        if not name:
            raise _bad(p, f"row {i}: no line name")
        lines.setdefault(name, TruthLine(name)).events.append(
            _event({k: (v.strip() if isinstance(v, str) else v) for k, v in r.items()}, p, f"row {i}", fps)
        )
    return Truth(p, None, fps, None, None, lines, {})
