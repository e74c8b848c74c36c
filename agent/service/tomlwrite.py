"""A small TOML writer for the config's shapes (the stdlib reads TOML but cannot write it).

Covers what a config holds: tables, arrays of tables (also nested, e.g. ``cameras[].analytics.lines``),
strings (escaped), integers, floats (incl. inf/nan), booleans, lists and inline tables. ``None``
values are left out (TOML has no null; the schema's default applies). The output round-trips
through ``tomllib`` exactly; the tests check that with generated documents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _key(k: object) -> str:
    if not isinstance(k, str):
        raise TypeError(f"TOML keys must be strings, got {k!r}")
    return k if _BARE.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _float(f: float) -> str:
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    text = repr(f)
    return text if any(c in text for c in ".eE") else text + ".0"


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, Mapping) for x in v)


def value(v: Any) -> str:
    """One TOML value (inline form)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, PurePath):
        return _string(str(v))
    if isinstance(v, Mapping):
        items = [f"{_key(k)} = {value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, (list, tuple)):
        if any(x is None for x in v):
            raise TypeError("TOML arrays cannot hold null values")
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} as TOML")


def _table(data: Mapping[str, Any], path: list[str], out: list[str], header: str | None) -> None:
    scalars = [
        (k, v)
        for k, v in data.items()
        if v is not None and not isinstance(v, Mapping) and not _is_table_array(v)
    ]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    arrays = [(k, v) for k, v in data.items() if _is_table_array(v)]
    if header is not None:
        if out:
            out.append("")
        out.append(header)
    for k, v in scalars:
        out.append(f"{_key(k)} = {value(v)}")
    for k, v in tables:
        sub = path + [_key(k)]
        _table(v, sub, out, "[" + ".".join(sub) + "]")
    for k, v in arrays:
        sub = path + [_key(k)]
        for item in v:
            _table(item, sub, out, "[[" + ".".join(sub) + "]]")


def dumps(data: Mapping[str, Any], comment: str | None = None) -> str:
    """Render a mapping as a TOML document, optionally headed by ``#`` comment lines."""
    if not isinstance(data, Mapping):
        raise TypeError("a TOML document is a mapping")
    out: list[str] = []
    _table(data, [], out, None)
    head = [f"# {line}".rstrip() for line in comment.splitlines()] + [""] if comment else []
    return "\n".join(head + out) + "\n"
