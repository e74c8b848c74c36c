"""docs/mqtt.md's contract part is what scripts/mqtt_docs.py renders from the committed schemas and
the real example payloads, and every example validates against its strict schema."""

from __future__ import annotations

import importlib.util
import json

import jsonschema

from tests.conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("mqtt_docs", ROOT / "scripts" / "mqtt_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mqtt_md_is_in_step_with_schemas_and_examples():
    mod = _script()
    doc = (ROOT / "docs" / "mqtt.md").read_text()
    assert doc == mod.render_doc(doc), "docs/mqtt.md is stale: run .venv/bin/python scripts/mqtt_docs.py"


def test_every_example_is_a_valid_payload_of_its_kind():
    mod = _script()
    for name, (kind, _) in mod.EXAMPLE_FILES.items():
        schema = json.loads((ROOT / "docs" / "schemas" / f"{kind}.schema.json").read_text())
        payload = json.loads((ROOT / "docs" / "examples" / f"{name}.json").read_text())
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(payload)]
        assert not errors, (name, errors[:5])


def test_every_section_has_a_table():
    mod = _script()
    schema = json.loads((ROOT / "docs" / "schemas" / "summary.schema.json").read_text())
    sections = set(schema["properties"]["sections"]["properties"])
    tabled = {p.split(".")[1] for _, k, p in mod.TABLES if k == "summary" and p.startswith("sections.")}
    assert sections == tabled
