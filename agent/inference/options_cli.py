"""What every inference command shares: ``--config``, ``--models-dir`` and the config they give."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pragma: no cover
    from agent.config import AgentConfig


def cli_config(config_file: str | None, models_dir: str | None, **inference: Any) -> AgentConfig:
    """The config of ``--config`` with ``--models-dir`` and the given ``inference.*`` overrides.

    An override that is ``None`` (its option not given) leaves the config's value.
    """
    from agent.config import load_config

    cfg = load_config(config_file)
    if models_dir:
        cfg.models.dir = Path(models_dir)
    for k, v in inference.items():
        if v is not None:
            setattr(cfg.inference, k, v)
    return cfg


config_opt = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Config file (models.dir, mirror, inference settings). Default: built-in defaults.",
)
dir_opt = click.option(
    "--models-dir", type=click.Path(file_okay=False), help="Override models.dir (where models are installed)."
)
