"""The contract's building blocks: field, object, map and array builders, the envelope and the document.

Every schema part is built from these, so each field has a type, a meaning, a unit where it has one
(``x-unit``) and says whether it may be null; objects are closed (``additionalProperties: false``).
"""

from __future__ import annotations

from typing import Any

from agent.sync.topics import SCHEMA_VERSION

MAJOR = SCHEMA_VERSION.split(".")[0]
BASE_URI = "https://edge-agent.example/schemas"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


# -- small builders ---------------------------------------------------------------------------------
def f(type_: str | list[str], desc: str, unit: str | None = None, null: bool = False, **kw: Any) -> dict:
    """A scalar field. ``null``: the value may be null (with the reason in ``desc``)."""
    types = [type_] if isinstance(type_, str) else list(type_)
    if null:
        types.append("null")
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types, "description": desc}
    if unit:
        out["x-unit"] = unit
    out.update(kw)
    return out


def obj(desc: str, props: dict[str, dict], optional: tuple[str, ...] = (), null: bool = False) -> dict:
    """A closed object: every property required unless named in ``optional``."""
    out: dict[str, Any] = {
        "type": ["object", "null"] if null else "object",
        "description": desc,
        "additionalProperties": False,
        "required": [k for k in props if k not in optional],
        "properties": props,
    }
    return out


def mapof(desc: str, value: dict, key: str = "name", pattern: str | None = None) -> dict:
    """A map keyed by names (``x-key`` names what the key is)."""
    out: dict[str, Any] = {"type": "object", "description": desc, "x-key": key, "additionalProperties": value}
    if pattern:
        out["propertyNames"] = {"pattern": pattern}
    return out


def arr(desc: str, items: dict, **kw: Any) -> dict:
    return {"type": "array", "description": desc, "items": items, **kw}


def ts(desc: str, null: bool = False) -> dict:
    return f("string", desc + " (UTC, ISO-8601 with milliseconds)", null=null, pattern=TS)


INT0: dict[str, Any] = {"minimum": 0}  # **INT0: an integer that is never negative


def counts_by_class(desc: str) -> dict:
    """``{line: {direction: {class: n}}}``."""
    return mapof(
        desc,
        mapof(
            "Per direction.",
            mapof(
                "Per class.",
                f(
                    "integer",
                    "Vehicles. With privacy.small_counts mode dp, a protected class's count carries Laplace noise and may be negative (see the payload's privacy declaration).",
                    "vehicles",
                ),
                "class",
            ),
            "direction",
        ),
        "line",
    )


def envelope(kind: str, seq: bool = True) -> dict[str, dict]:
    props: dict[str, dict] = {
        "schema": {"const": f"edge-agent/{kind}/{MAJOR}", "description": "Payload kind and contract major."},
        "schema_version": f(
            "string", "Contract version (semver) the payload follows.", pattern=r"^\d+\.\d+\.\d+$"
        ),
    }
    if seq:
        props["seq"] = f(
            "integer",
            "Per-device message sequence: +1 per outbox message, survives restarts, never reused.",
            minimum=1,
        )
    props.update(
        {
            "device": f("string", "Device id (device.id, also the MQTT client id).", pattern=NAME),
            "site": f("string", "Site (device.site).", pattern=NAME),
            "ts": ts("When the payload was written"),
            "session": f(
                "integer",
                "Connection session (like Sparkplug bdSeq) that sent it: +1 per connection attempt. Added at publish time (not in the stored outbox text).",
                minimum=0,
            ),
        }
    )
    if seq:
        props["replay"] = {
            "const": True,
            "description": "Present (true) only on a re-send by a replay command.",
        }
    return props


def document(kind: str, title: str, desc: str, schema: dict) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE_URI}/{kind}.schema.json",
        "title": title,
        "description": desc,
        "x-schema-version": SCHEMA_VERSION,
        **schema,
    }


def pct_obj(desc: str, unit: str, p50: str = "p50", p85: str = "p85") -> dict:
    return obj(
        desc,
        {
            p50: f("number", "Median; null without values.", unit, null=True),
            p85: f("number", "85th percentile; null without values.", unit, null=True),
            "n": f("integer", "Values.", "values", **INT0),
        },
    )
