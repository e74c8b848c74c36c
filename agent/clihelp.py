"""What the console commands of every part share: finding the agent's config, the options that say
where to read from (``--config``, ``--url``, ``--db``, ``--offline``), name checks, and
:func:`query` (ask the running agent's API, else read its database read-only).

A part's commands live in its own ``cli.py`` and take these from here; :mod:`agent.api.client`
holds the two sources (the API and the database) they read from.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import click

from agent.api.client import ApiSource, DbSource, fetch, open_source
from agent.api.queries import NAME_PATTERN
from agent.config import AgentConfig, load_config
from agent.timefmt import iso_utc

DEFAULT_CONFIG = Path("/etc/edge-agent/config.toml")
CONFIG_ENV = "EDGE_AGENT_CONFIG"


def load(config: str | None) -> tuple[AgentConfig, str | None]:
    """The agent's config: --config, else $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml if it
    exists, else the built-in defaults. Returns (config, the file used or None)."""
    path = config or os.environ.get(CONFIG_ENV) or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None)
    return load_config(path), path


config_opt = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Agent config file [default: $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml, else built-in defaults].",
)
url_opt = click.option(
    "--url", default=None, help="The API's base URL [default: from api.bind and api.port]."
)
db_opt = click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help="Database file when the agent is not running [default: storage.path].",
)
offline_opt = click.option("--offline", is_flag=True, help="Read the database even if the agent runs.")


direct_db_opt = click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read this database file directly (read-only), without asking the agent.",
)


def check_name(_ctx: Any, param: Any, value: str | None) -> str | None:
    """A camera or sensor name as the config allows them (and the API accepts): both sources refuse the same."""
    if value is not None and not re.match(NAME_PATTERN, value):
        raise click.BadParameter(
            f"{value!r}: names are letters, digits, '_', '.', '-' (at most 64)", param=param
        )
    return value


def source_options(f: Any) -> Any:
    """--config, --url, --db (read that file directly) and --offline, for a console command that asks
    the running agent's API and else reads its database (see :func:`query`)."""
    for opt in reversed((config_opt, url_opt, direct_db_opt, offline_opt)):
        f = opt(f)
    return f


def query(
    config: str | None, url: str | None, db: str | None, offline: bool, what: str, call: Any
) -> tuple[Any, ApiSource | DbSource]:
    """``call(source)`` on the running agent's API, or on its database (read-only) when the agent does
    not answer (or --db / --offline is given); says on stderr which one answered ("WHAT from ...").
    Returns (the answer, the source)."""
    cfg, _ = load(config)
    src = open_source(cfg, url=url, db=db, offline=offline, db_direct=True)
    try:
        out, used = fetch(cfg, src, call, db=db)
    finally:
        src.close()
    if used is not src:
        used.close()
    click.echo(f"{what} from {used.where}", err=True)
    return out, used


def since_param(seconds_back: float, now: float | None = None) -> str:
    """A console command's "how far back" as the fixed UTC time both sources are given (so the API
    and the database answer for the same window)."""
    return iso_utc(max((time.time() if now is None else now) - seconds_back, 0.0))
