"""What ``edge-agent run`` prints when it ends: the counts per camera, line and direction, and where
to look next (the status page, ``edge-agent counts``)."""

from __future__ import annotations

import shlex
from typing import Any


def count_lines(pipe: Any) -> list[str]:
    """One line per camera/line/direction with its total since start and the classes in it.

    Args:
        pipe: a stopped (or running) :class:`~agent.pipeline.Pipeline`.
    """
    out: list[str] = []
    for cam, runner in sorted(getattr(pipe, "analytics", {}).items()):
        if not runner.cfg.lines:
            continue
        out.append(
            f"counted on camera {cam} ({runner.frames} frames"
            + (f", {runner.epochs + 1} passes of the file" if runner.epochs else "")
            + "):"
        )
        for lc in runner.cfg.lines:
            parts = []
            for d in lc.directions:
                per = {c: n for (ln, dd, c), n in runner.totals.items() if ln == lc.name and dd == d and n}
                total = sum(per.values())
                detail = ", ".join(f"{c} {n}" for c, n in sorted(per.items(), key=lambda kv: -kv[1]))
                parts.append(f"{d} {total}" + (f" ({detail})" if detail else ""))
            line = f"  line {lc.name}: " + "; ".join(parts)
            if runner.epochs:
                passes = runner.epochs + 1
                per_pass = "; ".join(
                    f"{d} {sum(n for (ln, dd, _c), n in runner.totals.items() if ln == lc.name and dd == d) / passes:.1f}"
                    for d in lc.directions
                )
                line += f" (per pass: {per_pass})"
            out.append(line)
    return out


def where_to_look(cfg: Any, config_file: str | None, db_override: str | None = None) -> list[str]:
    """The status page URL and the ``counts`` command that reads what was stored."""
    out = []
    if cfg.api.enabled:
        host = cfg.api.bind if cfg.api.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        out.append(f"status page (while the agent runs): http://{host}:{cfg.api.port}/")
    cmd = ["edge-agent", "counts"]
    if config_file:
        cmd += ["--config", config_file]
    if db_override:
        cmd += ["--db", db_override]
    out.append(f"the stored counts, any time: {' '.join(shlex.quote(c) for c in cmd)}")
    return out
