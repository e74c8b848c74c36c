"""The contract test: a live agent with every part on, every recorded message validated against the
strict schemas (docs/schemas), 0 undeclared keys across every message kind."""

from __future__ import annotations

import json

import jsonschema

from agent.sync import contract
from tests.conftest import ROOT
from tests.contract.live import by_kind

SCHEMAS = ROOT / "docs" / "schemas"


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_committed_schemas_are_the_generated_ones():
    for kind, schema in contract.build().items():
        assert (SCHEMAS / f"{kind}.schema.json").read_text() == contract.render(schema), (
            f"docs/schemas/{kind}.schema.json is stale: run python -m agent.sync.contract"
        )


def _walk_closed(schema: dict, path: str = ""):
    """Every object schema either closes its keys or declares a value schema for a map."""
    t = schema.get("type")
    types = t if isinstance(t, list) else [t]
    if "object" in types and schema.get("description", "").startswith(("Arguments", "The command's result")):
        return
    if "object" in types:
        yield path, schema.get("additionalProperties")
    for k, sub in (schema.get("properties") or {}).items():
        yield from _walk_closed(sub, f"{path}.{k}")
    ap = schema.get("additionalProperties")
    if isinstance(ap, dict):
        yield from _walk_closed(ap, f"{path}.*")
    if isinstance(schema.get("items"), dict):
        yield from _walk_closed(schema["items"], f"{path}[]")
    for i, sub in enumerate(schema.get("anyOf") or []):
        yield from _walk_closed(sub, f"{path}|{i}")


def test_every_object_is_closed_or_a_declared_map():
    for kind, schema in contract.build().items():
        for path, ap in _walk_closed(schema):
            assert ap is False or isinstance(ap, dict), (
                f"{kind}{path}: open object (additionalProperties {ap!r})"
            )


def test_live_agent_every_message_validates_with_no_undeclared_key(recording):
    msgs, _, _ = recording
    kinds = by_kind(msgs)
    assert {"summary", "health", "status", "reply", "command"} <= set(kinds), sorted(kinds)
    errors = []
    for kind, items in kinds.items():
        v = validator(kind)
        for m in items:
            if kind == "command" and m["payload"] == "not json":
                continue  # the malformed request the recorder sends on purpose (its reply is checked)
            for e in v.iter_errors(m["payload"]):
                errors.append(f"{m['topic']}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
    assert not errors, f"{len(errors)} contract violations:\n" + "\n".join(errors[:40])
    births = [m["payload"] for m in kinds["status"] if m["payload"]["state"] == "online"]
    # the birth at connect may come before the models are loaded (accelerator null, no models); once
    # they are, the birth is published again and names the accelerator and the fallback reasons
    assert births and all(b["models"] == {} for b in births if b["accelerator"] is None)
    loaded = [b for b in births if b["models"]]
    assert loaded and all(b["accelerator"] == "cpu" for b in loaded), births
    assert all(b["models"]["ssd_mobilenet_v1_coco"]["accelerator"] == "cpu" for b in loaded)
    assert any(
        m["payload"]["state"] == "offline" and m["payload"]["reason"] == "stopped" for m in kinds["status"]
    )
    # every part reported: analytics with bins, zones and speeds, every sensor driver, an AQI and the GPS
    sections = [m["payload"]["sections"] for m in kinds["summary"]]
    import sqlite3

    _, db, _ = recording
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("SELECT COUNT(*) FROM volume_bins").fetchone()[0] > 0  # bins were counted
    conn.close()
    sensors = {name for s in sections for name in s.get("sensors", {})}
    assert sensors >= {"pms5003", "pms7003", "sds011", "nmea", "ops243", "mcu"}, sensors
    assert any(s.get("gps") for s in sections)


def test_an_undeclared_key_fails(recording):
    msgs, _, _ = recording
    summary = next(m["payload"] for m in msgs if m["topic"].endswith("/summary"))
    bad = json.loads(json.dumps(summary))
    bad["sections"]["health"]["surprise"] = 1
    assert not validator("summary").is_valid(bad)
    bad = json.loads(json.dumps(summary))
    bad["sections"]["sensors"] = {"sensors": {"pms5003": {}}}  # the schema-1 nesting is gone
    assert not validator("summary").is_valid(bad)


def test_stored_outbox_payloads_validate_once_the_session_is_added(recording):
    """The outbox keeps each message as it is before publish: publishing adds only ``session``."""
    import sqlite3

    _, db, _ = recording
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT o.kind, p.payload FROM outbox o JOIN outbox_payload p USING (seq) ORDER BY o.seq"
    ).fetchall()
    conn.close()
    assert rows
    for kind, text in rows:
        doc = json.loads(text)
        assert "session" not in doc
        errs = list(validator(kind).iter_errors(doc | {"session": 1}))
        assert not errs, (kind, [e.message for e in errs][:5])
