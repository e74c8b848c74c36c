"""The text report of ``edge-agent validate`` (:mod:`agent.analytics.validate_cli`; ``--json``
prints :meth:`ValidationResult.as_dict` instead)."""

from __future__ import annotations

import click

from agent.analytics.validate import ValidationResult


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def print_result(res: ValidationResult, truth_file: str) -> None:
    """The result as text: per line and direction, missed and extra frames, classes, total."""
    click.echo(f"validate {res.clip} ({res.frames} frames, {res.fps:g} fps) against {truth_file}")
    hdr = f"{'line':<14} {'direction':<10} {'truth':>6} {'counted':>8} {'matched':>8} {'missed':>7} {'extra':>6} {'accuracy':>9}"
    click.echo(hdr)
    for r in res.reports:
        opt = f"+{r.optional}?" if r.optional else ""
        click.echo(
            f"{r.line:<14} {r.direction:<10} {str(r.truth) + opt:>6} {r.counted_effective:>8} {r.matched:>8} "
            f"{len(r.missed):>7} {len(r.extra):>6} {_pct(None if r.error is None else 1 - abs(r.error)):>9}"
        )
    for r in res.reports:
        if r.missed:
            click.echo(
                f"  missed {r.line}/{r.direction} at frames {', '.join(str(round(e.frame)) for e in r.missed)}"
            )
        if r.extra:
            click.echo(
                f"  extra  {r.line}/{r.direction} at frames {', '.join(str(round(c.frame)) for c in r.extra)}"
            )
    for r in res.reports:
        per = [
            f"{k} {v['counted']}/{v['truth']}"
            for k, v in sorted(r.per_class.items())
            if v["truth"] or v["counted"]
        ]
        if per:
            click.echo(f"  by class {r.line}/{r.direction}: " + ", ".join(per))
    d = res.as_dict()["total"]
    click.echo(
        f"total: truth {d['truth']}, counted {d['counted']}, matched {d['matched']}, accuracy {_pct(d['accuracy'])}"
    )
    if res.tracking:
        click.echo(
            f"tracking: {res.tracking.get('tracks', 0)} confirmed tracks, "
            f"{res.tracking.get('relinked_fragments', 0)} fragments re-linked"
        )
    ident = res.identity
    if ident is None:
        click.echo("identity: not measured (the truth names no objects; see docs/validation.md)")
    else:
        click.echo(
            f"identity: {ident['objects']} objects counted by {ident['tracks']} tracks, "
            f"{ident['fragments']} fragments, {ident['id_switches']} ID switches"
        )
    for p in res.pictures:
        click.echo(f"picture: {p}")
    bad = [
        f"{r.line}/{r.direction} {'+' if (r.error or 0) > 0 else ''}{_pct(r.error)}"
        for r in res.reports
        if r.error is None or abs(r.error) > res.max_error + 1e-9
    ]
    if bad:
        click.echo(f"result: FAIL, outside ±{100 * res.max_error:g} %: " + ", ".join(bad))
    else:
        click.echo(f"result: ok, every line and direction within ±{100 * res.max_error:g} %")
