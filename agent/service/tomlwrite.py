"""Writing config TOML (the stdlib reads TOML but cannot write it): a thin layer over ``tomli-w``.

What it adds to ``tomli_w.dumps``: ``None`` values are left out (TOML has no null; the schema's
default applies), paths become strings, and a ``#`` comment header. The output round-trips through
``tomllib`` exactly; the tests check that with generated documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import tomli_w


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        for k in v:
            if not isinstance(k, str):
                raise TypeError(f"TOML keys must be strings, got {k!r}")
        return {k: _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        if any(x is None for x in v):
            raise TypeError("TOML has no null: a list cannot hold None")
        return [_plain(x) for x in v]
    if isinstance(v, PurePath):
        return str(v)
    return v


def value(v: Any) -> str:
    """One TOML value (as written after ``key = ``)."""
    if v is None:
        raise TypeError("TOML has no null")
    text = tomli_w.dumps({"v": _plain(v)})
    if not text.startswith("v = "):
        raise TypeError(f"not an inline TOML value: {v!r}")
    return text[len("v = ") :].rstrip("\n")


def dumps(data: Mapping[str, Any], comment: str | None = None) -> str:
    """Render a mapping as a TOML document, optionally headed by ``#`` comment lines."""
    if not isinstance(data, Mapping):
        raise TypeError("a TOML document is a mapping")
    head = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines()) + "\n" if comment else ""
    return head + tomli_w.dumps(_plain(data))
