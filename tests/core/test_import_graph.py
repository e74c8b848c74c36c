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


def test_imports_by_a_string_only_the_two_registries():
    # The summary-section and migration registries still load their parts by name (see CHANGELOG #13);
    # nothing else may.
    strings = {m for m, _, _ in _graph().report()["strings"]}
    assert strings <= {"agent.sections", "agent.store.db"}, strings
