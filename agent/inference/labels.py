"""Label files: class id -> name.

Formats read:
- one label per line, line number = class id (``n/a`` or empty lines are gaps);
- ``ID label`` or ``ID: label`` per line (pycoral's ``read_label_file`` format);
- a TF Object Detection label map (``.pbtxt``: ``item { name: "x" id: 1 }``); its ids are
  1-based and models output ``id - 1``, so they are shifted down by one.
"""

from __future__ import annotations

import re
from pathlib import Path

from agent.errors import ModelError

_ID_LINE = re.compile(r"^\s*(\d+)[\s:]+(.+?)\s*$")
_PBTXT_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)


def read_labels(path: str | Path) -> dict[int, str]:
    """Read a label file.

    Args:
        path: a ``.txt`` (plain or ``ID label``) or ``.pbtxt`` label file.

    Returns:
        ``{class_id: name}``; gaps (``n/a``, ``???``, empty) are left out.

    Raises:
        ModelError: the file is missing or unreadable.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            f"label file {p} does not exist", "fix inference.labels (or the catalog's labels entry)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"cannot read label file {p}: {exc}", "give a UTF-8 text file, one label per line"
        ) from None
    if p.suffix == ".pbtxt" or "item {" in text[:200]:
        return _parse_pbtxt(text)
    lines = text.splitlines()
    numbered = [ln for ln in lines if ln.strip()]
    if numbered and all(_ID_LINE.match(ln) for ln in numbered):
        out = {}
        for ln in numbered:
            m = _ID_LINE.match(ln)
            if m and not _is_gap(m.group(2)):
                out[int(m.group(1))] = m.group(2)
        return out
    return {i: ln.strip() for i, ln in enumerate(lines) if not _is_gap(ln)}


def _is_gap(name: str) -> bool:
    return name.strip().lower() in ("", "n/a", "???", "nan")


def _parse_pbtxt(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for body in _PBTXT_ITEM.findall(text):
        mid = re.search(r"\bid\s*:\s*(\d+)", body)
        mname = re.search(r"\b(?:display_name|name)\s*:\s*\"([^\"]*)\"", body)
        if mid and mname:
            out[int(mid.group(1)) - 1] = mname.group(1)
    return out


def packaged_labels(name: str) -> dict[int, str]:
    """Labels from the project's own label files (``models/labels/<name>``)."""
    from agent.inference.catalog import labels_dir

    return read_labels(labels_dir() / name)


def coco80(coco90: dict[int, str]) -> dict[int, str]:
    """The 80 contiguous COCO classes (YOLO ids) from the 90-id label space (SSD ids)."""
    return {i: name for i, (_, name) in enumerate(sorted(coco90.items()))}


def label_of(labels: dict[int, str], class_id: int) -> str:
    """The name of ``class_id`` (``class_<id>`` when unknown)."""
    return labels.get(class_id) or f"class_{class_id}"
