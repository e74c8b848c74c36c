"""The status messages of a session: the birth (online, with the outbox's seq range and the loaded
models) and the death (offline: stopped, or the broker's last will)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.sync import outbox
from agent.sync.topics import SCHEMA_VERSION, SCHEMAS, Topics
from agent.timefmt import iso_utc

if TYPE_CHECKING:  # annotations only: the whole config sits above the parts
    from agent.config import AgentConfig


def birth_message(
    cfg: AgentConfig,
    topics: Topics,
    session: int,
    live: dict[str, Any],
    reader: Callable[[], sqlite3.Connection],
) -> dict[str, Any]:
    """The retained ``online`` status of a new session: who, which models on which accelerators,
    and the outbox's last seq and first pending seq, so the hub knows what is still to come."""
    try:
        conn = reader()
        try:
            last = outbox.state_value(conn, "last_seq")
            first = conn.execute("SELECT MIN(seq) FROM outbox WHERE state = 'pending'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        last, first = None, None
    return {
        "schema": SCHEMAS["status"],
        "schema_version": SCHEMA_VERSION,
        "state": "online",
        "device": topics.device,
        "site": topics.site,
        "ts": iso_utc(time.time()),
        "session": session,
        "agent_version": __version__,
        **birth_models(live, cfg.inference.model),
        # set while the model runs below its accelerator (lost mid-run): which, since when, why
        "accelerator_fallback": live.get("accelerator_fallback"),
        "config_hash": cfg.config_hash(),
        "seq_last": last,
        "seq_first_pending": first if first is not None else (last + 1 if last is not None else None),
        "summary_interval_s": cfg.summary.interval_s,
        "mqtt_protocol": cfg.mqtt.protocol,
    }


def death_message(topics: Topics, session: int, *, stopping: bool) -> dict[str, Any]:
    """The ``offline`` status: sent on a clean stop, and registered as the last will otherwise."""
    return {
        "schema": SCHEMAS["status"],
        "schema_version": SCHEMA_VERSION,
        "state": "offline",
        "device": topics.device,
        "site": topics.site,
        "ts": iso_utc(time.time()),
        "session": session,
        "reason": "stopped" if stopping else "connection lost (last will)",
    }


def birth_models(live: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The birth's model fields from the pipeline's status: the default ``model``, its active
    ``accelerator`` (the first loaded model's when the default is not loaded; None with no model), and
    per loaded model its accelerator and the reasons the better ones were skipped (fallbacks); models
    that failed to load are in ``model_errors``."""
    loaded = live.get("models") or {}
    models = {
        name: {
            "accelerator": m.get("accelerator"),
            "fallback_reasons": list(m.get("reasons") or []),
            "family": m.get("family"),
        }
        for name, m in sorted(loaded.items())
        if isinstance(m, dict)
    }
    main = models.get(default_model) or next(iter(models.values()), None)
    return {
        "model": default_model,
        "accelerator": main["accelerator"] if main else None,
        "models": models,
        "model_errors": {str(k): str(v) for k, v in (live.get("model_errors") or {}).items()},
    }
