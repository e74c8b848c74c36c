"""The status message: the retained birth (online) and death (offline, also the last will)."""

from __future__ import annotations

from agent.sync.contract.fields import INT0, document, envelope, f, mapof, obj
from agent.sync.contract.health import model_entry


def accelerator_fallback() -> dict:
    """The main model's run below the accelerator it started on (null when it runs where it started)."""
    return obj(
        "online only: set while the main model runs below the accelerator it started on, after that accelerator was lost mid-run (repeated invoke errors); null when it runs where it started.",
        {
            "lost": f("string", "The accelerator lost (edgetpu, gpu, delegate)."),
            "since": f("number", "When it was lost (Unix time).", "s"),
            "reason": f("string", "The invoke error."),
            "probes": f("integer", "Re-probes so far.", **INT0),
            "next_probe_in_s": f("number", "Seconds to the next re-probe.", "s", null=True),
        },
        optional=("probes", "next_probe_in_s"),
        null=True,
    )


def status_fields() -> dict[str, dict]:
    """The envelope (no seq) and every field of either state; ``status_schema`` ties them to a state."""
    props = envelope("status", seq=False)
    props.update(
        {
            "state": {
                "enum": ["online", "offline"],
                "description": "online: the birth; offline: the last will or a clean stop.",
            },
            "reason": f("string", "offline only: 'stopped' or 'connection lost (last will)'."),
            "agent_version": f("string", "online only: agent version."),
            "model": f("string", "online only: the default model (inference.model)."),
            "accelerator": f(
                "string",
                "online only: accelerator the default model runs on (else the first loaded model's); null when no model is loaded.",
                null=True,
            ),
            "models": mapof(
                "online only: per loaded model, its accelerator and fallback reasons.", model_entry(), "model"
            ),
            "model_errors": mapof(
                "online only: models that failed to load: name -> error.", f("string", "The error."), "model"
            ),
            "accelerator_fallback": accelerator_fallback(),
            "config_hash": f("string", "online only: hash of the effective config."),
            "seq_last": f("integer", "online only: last seq assigned; null before the first.", null=True),
            "seq_first_pending": f(
                "integer",
                "online only: lowest undelivered seq at connect (a hub's baseline); null before the first message.",
                null=True,
            ),
            "summary_interval_s": f("number", "online only: summary.interval_s.", "s"),
            "mqtt_protocol": {"enum": ["3.1.1", "5"], "description": "online only: MQTT protocol version."},
        }
    )
    return props


def status_schema() -> dict:
    props = status_fields()
    online = [
        "agent_version", "model", "accelerator", "models", "model_errors", "config_hash",
        "seq_last", "seq_first_pending", "summary_interval_s", "mqtt_protocol",
    ]  # fmt: skip
    base = obj("A status.", props, optional=tuple(["reason", "accelerator_fallback", *online]))
    base["allOf"] = [
        {
            "if": {"properties": {"state": {"const": "online"}}},
            "then": {"required": online, "not": {"required": ["reason"]}},
        },
        {
            "if": {"properties": {"state": {"const": "offline"}}},
            "then": {"required": ["reason"], "not": {"anyOf": [{"required": [k]} for k in online]}},
        },
    ]
    return document(
        "status",
        "Device status (birth and death)",
        "Retained, QoS 1, on {prefix}/{site}/{device}/status. A hub ignores an offline status whose session is lower than the session it holds as online.",
        base,
    )
