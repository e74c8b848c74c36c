"""Commands: the request a hub sends to a unit and the unit's reply."""

from __future__ import annotations

from agent.sync.contract.fields import MAJOR, document, envelope, f, obj


def command_schema() -> dict:
    return document(
        "command",
        "Command request (hub to unit)",
        "On {prefix}/{site}/{device}/cmd/{name}, QoS 1. The reply goes to .../cmd/{name}/reply.",
        obj(
            "A command request.",
            {
                "schema": {
                    "const": f"edge-agent/command/{MAJOR}",
                    "description": "Optional; the agent does not require it (older hubs send edge-agent/command/1).",
                },
                "id": f(
                    ["string", "integer"],
                    "Correlation id, copied to the reply (MQTT 5 Correlation Data is copied too).",
                    null=True,
                ),
                "args": {
                    "type": "object",
                    "description": "Arguments of the command (replay: from_seq, to_seq).",
                },
            },
            optional=("schema", "id", "args"),
        ),
    )


def reply_schema() -> dict:
    props = envelope("reply", seq=False)
    props["schema_version"] = dict(props["schema_version"])
    props.update(
        {
            "command": f("string", "The command answered."),
            "id": f(
                ["string", "integer"], "The request's id; null when it had none or was not JSON.", null=True
            ),
            "ok": f("boolean", "true: result; false: error."),
            "result": {"type": "object", "description": "The command's result (see the commands table)."},
            "error": obj(
                "Why it failed.",
                {
                    "code": {
                        "enum": [
                            "bad_json",
                            "bad_request",
                            "unknown_command",
                            "disabled",
                            "busy",
                            "too_large",
                            "failed",
                        ],
                        "description": "Error code.",
                    },
                    "message": f("string", "What went wrong and what to do."),
                },
            ),
        }
    )
    base = obj("A reply.", props, optional=("result", "error"))
    base["allOf"] = [
        {"if": {"properties": {"ok": {"const": True}}}, "then": {"required": ["result"]}},
        {"if": {"properties": {"ok": {"const": False}}}, "then": {"required": ["error"]}},
    ]
    return document(
        "reply", "Command reply", "On {prefix}/{site}/{device}/cmd/{name}/reply, QoS 1, not retained.", base
    )
