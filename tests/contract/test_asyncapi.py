"""docs/asyncapi.yaml parses with the official AsyncAPI parser (@asyncapi/parser through node) with no
error and no warning, references the strict schemas, and names every message and operation."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

NODE_DIR = ROOT / ".node"  # scripts/test.sh installs the parser here (npm), the test does too if missing


def _parser() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        pytest.skip("node is not installed: the AsyncAPI parser runs on node (apt-get install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@asyncapi" / "parser").exists():
        if not npm:
            pytest.skip("npm is not installed: it installs @asyncapi/parser (apt-get install npm)")
        NODE_DIR.mkdir(exist_ok=True)
        r = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "@asyncapi/parser@3"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, f"npm could not install @asyncapi/parser:\n{r.stderr[-2000:]}"
    return node


def test_asyncapi_parses_with_no_error_or_warning():
    node = _parser()
    script = NODE_DIR / "asyncapi_check.mjs"
    shutil.copy(ROOT / "tests" / "contract" / "asyncapi_check.mjs", script)
    r = subprocess.run(
        [node, str(script), str(ROOT / "docs" / "asyncapi.yaml")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    bad = [d for d in out["diagnostics"] if d["severity"] <= 1]  # 0 error, 1 warning
    assert out["parsed"] and not bad, json.dumps(bad, indent=1)[:3000]
    assert out["version"].startswith("3.")


def test_asyncapi_references_the_strict_schemas_and_has_ids():
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert doc["id"].startswith("urn:") and doc["info"]["license"]["name"] == "Apache-2.0"
    assert doc["info"]["contact"]["email"]
    refs = {m["payload"]["schema"]["$ref"] for m in doc["components"]["messages"].values()}
    assert refs == {
        f"schemas/{k}.schema.json" for k in ("summary", "health", "event", "status", "command", "reply")
    }
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive") and op["messages"], name
    from agent.sync.topics import SCHEMA_VERSION

    assert doc["info"]["version"] == SCHEMA_VERSION
