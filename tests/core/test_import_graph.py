"""The agent's import graph (scripts/import_graph.py): no circle, few upward imports, none by a string."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "import_graph.py"


def _graph():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_circle():
    circles = _graph().report()["circles"]
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_every_module_has_a_layer_and_the_script_runs():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert "modules" in out.stdout, out.stderr
    assert "no layer for" not in out.stdout + out.stderr


def test_graph_sees_function_level_and_relative_imports(tmp_path):
    g = _graph()
    pkg = tmp_path / "agent"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "types.py").write_text("def f():\n    from agent.sub import mod\n")
    (pkg / "sub" / "__init__.py").write_text("from . import mod\n")
    (pkg / "sub" / "mod.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent import types\n"
        "import importlib\nimportlib.import_module('agent.types')\n"
    )
    (tmp_path / "firmware_bridge").mkdir()
    graph, strings = g.edges(g.modules(tmp_path))
    assert "agent.sub.mod" in graph["agent.types"]  # inside a function
    assert "agent.sub.mod" in graph["agent.sub"]  # relative, from a package
    assert graph["agent.sub.mod"] == {}  # TYPE_CHECKING imports never run
    assert strings == [("agent.sub.mod", 5, "import_module(agent.types)")]
    assert g.circles({"a": {"b": 1}, "b": {"a": 1}, "c": {}}) == [["a", "b"]]


def test_few_upward_imports():
    g = _graph()
    up = g.report()["upward"]
    assert len(up) <= g.MAX_UPWARD, "upward imports: " + "; ".join(f"{m}:{n} -> {t}" for m, n, t in up)


def test_nothing_imports_a_module_by_a_string():
    # parts are imported by name in agent/parts.py (plain imports); the registries only check it ran
    assert _graph().report()["strings"] == []


def test_without_agent_parts_the_database_refuses_instead_of_a_smaller_schema(tmp_path):
    code = f"""
from agent.store.db import Database
try:
    Database({str(tmp_path / "a.sqlite")!r})
except RuntimeError as exc:
    print("refused:", exc)
import agent.parts
db = Database({str(tmp_path / "a.sqlite")!r})
tables = {{r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}}
print(sorted({{"detections", "outbox", "volume_bins", "incidents", "readings"}} - tables))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "refused: the agent's parts are not loaded" in r.stdout and "import agent.parts" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "[]"  # every part's tables, once it is imported
