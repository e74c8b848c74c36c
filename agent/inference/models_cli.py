"""Commands: ``edge-agent models list|pull|verify`` (the catalog's models and sample media)."""

from __future__ import annotations

import json
import sys

import click

from agent.errors import AgentError
from agent.inference.options_cli import cli_config, config_opt, dir_opt


@click.group("models")
def models_group() -> None:
    """List, install (pull) and verify catalog models and sample media."""


@models_group.command("list")
@config_opt
@dir_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
def models_list(config_file: str | None, models_dir: str | None, as_json: bool) -> None:
    """List the catalog: name, kind, task, licence, installed or not."""
    from agent.inference import catalog as cat

    cfg = cli_config(config_file, models_dir)
    c = cat.load_catalog(cfg.models)
    for e in c.entries.values():
        installed = cat.installed_path(e, cfg.models).is_file()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "name": e.name,
                        "kind": e.kind,
                        "task": e.task,
                        "family": e.family,
                        "file": e.file,
                        "license": e.license,
                        "installed": installed,
                        "url": e.url,
                        "sha256": e.sha256,
                    }
                )
            )
        else:
            click.echo(
                f"{e.name:28} {e.kind:6} {(e.task or '-'):9} {e.license:11} "
                f"{'installed' if installed else 'not installed':14} {e.description}"
            )
    if not as_json:
        click.echo(f"catalog: {c.path}; install dir: {cat.install_dir(cfg.models)}")


@models_group.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Every catalog entry (models and media).")
@click.option(
    "--mirror",
    type=click.Path(file_okay=False),
    help="Copy from this mirror (models/, media/) instead of downloading. Default: models.mirror or EDGE_AGENT_MIRROR.",
)
@click.option("--force", is_flag=True, help="Reinstall even when a verified file is present.")
@config_opt
@dir_opt
def models_pull(
    names: tuple[str, ...],
    pull_all: bool,
    mirror: str | None,
    force: bool,
    config_file: str | None,
    models_dir: str | None,
) -> None:
    """Install catalog entries NAME... (sha256-verified; a mismatching file is refused)."""
    from agent.inference import catalog as cat

    cfg = cli_config(config_file, models_dir)
    if pull_all:
        names = tuple(cat.load_catalog(cfg.models).entries)
    if not names:
        raise AgentError("no model named", "give catalog names (`edge-agent models list`) or --all")
    cat.pull(
        names,
        cfg.models,
        mirror,
        progress=sys.stderr.isatty(),
        force=force,
        on_done=lambda e, p: click.echo(f"ok: {e.name} -> {p} (sha256 verified)"),
    )


@models_group.command("verify")
@config_opt
@dir_opt
def models_verify(config_file: str | None, models_dir: str | None) -> None:
    """Check the sha256 of every installed catalog file; exit 1 when one differs."""
    from agent.inference import catalog as cat

    cfg = cli_config(config_file, models_dir)
    bad = []
    for e, status in cat.verify(cfg.models):
        click.echo(f"{e.name:28} {status}")
        if status not in ("ok", "missing"):
            bad.append(e.name)
    if bad:
        raise AgentError(
            f"{len(bad)} installed file(s) do not match the catalog: {', '.join(bad)}",
            f"reinstall them: `edge-agent models pull --force {' '.join(bad)}`",
        )
