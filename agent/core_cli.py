"""Core commands: config check / example."""

from __future__ import annotations

import click

from agent.config import example_config, load_config


@click.group("config")
def config_group() -> None:
    """Check or print the configuration."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE; print the problems (key path, bad value, what is expected) or 'ok'."""
    cfg = load_config(file)
    click.echo(f"ok: {file} (device {cfg.device.site}/{cfg.device.id}, {len(cfg.cameras)} camera(s), "
               f"{len(cfg.sensors)} sensor(s), config hash {cfg.config_hash()})")


@config_group.command("example")
def config_example() -> None:
    """Print a fully commented example config, generated from the schema."""
    click.echo(example_config(), nl=False)


commands = [config_group]
