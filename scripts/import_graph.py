#!/usr/bin/env python3
"""The agent's module import graph: circles, upward imports and imports by a string.

    python3 scripts/import_graph.py [--verbose]        # exit 1 when there is a circle

Only the standard library (``ast``); nothing is imported or run. Every ``import`` and ``from ...
import`` in ``agent/`` and ``firmware_bridge/`` counts, at module level or inside a function,
except those under ``if TYPE_CHECKING:`` (annotations only: they never run, so they make no
circle). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
A package's ``__init__`` is its own node; importing ``a.b.c`` does not count as importing ``a.b``.

Layers, lowest first (a module may import its own layer and the ones below; importing a higher
layer is an *upward* import). The first rule that matches a module's dotted name wins:

  0 base        agent (the package), types, timefmt, errors, plugins, memory, host, fsutil, configbase, sections
                (the summary-section registry), clispec and each part's ``clispec`` (command
                names and help lines): what every part may use
  1 store       agent.store.*: the database, migrations registry, the single writer
  2 inputs      agent.sources.*, agent.inference.*, firmware_bridge protocol/transport/drivers:
                what produces frames, readings and detections
  3 analysis    agent.analytics.*, agent.privacy.*, firmware_bridge service/store/summary/aqi:
                what turns them into counts, incidents, AQI
  4 sinks       agent.sync.*, agent.ngsi_ld.*: outbox, MQTT, summaries, NGSI-LD
  5 api         agent.api.*: the local HTTP API, its queries and its console client
  6 hub         agent.hub.*: the city's side (reads the contract, never imported by the agent)
  7 config      agent.config: the whole config, made of every part's slice (``<part>/config.py``)
  8 service     agent.service.*: provisioning, doctor, systemd, logging (they read a whole config)
  9 assembly    agent.stages, agent.pipeline, agent.runner, agent.bench: what wires the parts
                into a daemon
 10 cli         agent.cli, agent.core_cli, agent.clihelp, every part's ``cli.py`` / ``*_cli.py``
                and ``__main__`` modules: the commands sit on top of everything

Three modules are placed by what they are, not by their folder: ``agent.sync.outbox`` (the
store's table of messages to send, written in the same transaction as what produced them; with
its tables in ``outbox_schema`` and its queries in ``outbox_read``),
``agent.sync.retention`` (the database size budget) and ``agent.sync.topics`` (the topic names and
schema version the outbox stamps on each row; no imports) are store-layer code that lives in sync/
today. ARCHITECTURE.md puts outbox and retention in store/; they are not moved yet because other
work is changing retention.py and the modules that import the outbox.

Upward imports are allowed to exist (each is a place where a lower part reaches into a higher
one); the test in tests/core/test_import_graph.py fails on circles and on more than
MAX_UPWARD upward imports or any import by a string.
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "firmware_bridge")
MAX_UPWARD = 3

LAYERS: list[tuple[str, int]] = [
    # the commands first: a part's cli module is a command, wherever it lives
    ("agent.cli", 10),
    ("agent.core_cli", 10),
    ("agent.clihelp", 10),
    ("*.cli", 10),
    ("*_cli", 10),
    ("*.__main__", 10),
    ("agent.clispec", 0),
    ("*.clispec", 0),  # a part's command names and help lines: data, no imports but agent.clispec
    ("agent.part", 1),
    ("*.part", 8),
    ("agent", 0),
    ("agent.types", 0),
    ("agent.timefmt", 0),
    ("agent.plugins", 0),
    ("agent.errors", 0),
    ("agent.memory", 0),
    ("agent.host", 0),
    ("agent.fsutil", 0),
    ("agent.backoff", 0),
    ("agent.opencv", 0),
    ("agent.configbase", 0),
    ("agent.sections", 0),
    ("agent.store*", 1),
    ("agent.sync.outbox", 1),
    ("agent.sync.outbox_read", 1),
    ("agent.sync.outbox_schema", 1),
    ("agent.sync.retention", 1),
    ("agent.sync.topics", 1),
    ("agent.sources*", 2),
    ("agent.inference*", 2),
    ("firmware_bridge.service", 3),
    ("firmware_bridge.store", 3),
    ("firmware_bridge.summary", 3),
    ("firmware_bridge.aqi", 3),
    ("firmware_bridge*", 2),
    ("agent.analytics*", 3),
    ("agent.privacy*", 3),
    ("agent.sync*", 4),
    ("agent.ngsi_ld*", 4),
    ("agent.api*", 5),
    ("agent.hub*", 6),
    ("agent.config", 7),
    ("agent.service.doctor", 10),  # the `edge-agent doctor` command: runs the parts' checks
    ("agent.service*", 8),
    ("agent.stages", 9),
    ("agent.pipeline*", 9),
    ("agent.parts", 9),
    ("agent.runner", 9),
    ("agent.bench", 9),
]
LAYER_NAMES = [
    "base",
    "store",
    "inputs",
    "analysis",
    "sinks",
    "api",
    "hub",
    "config",
    "service",
    "assembly",
    "cli",
]


def layer(mod: str) -> int:
    for pattern, n in LAYERS:
        if fnmatch.fnmatchcase(mod, pattern):
            return n
    raise SystemExit(f"import_graph: no layer for {mod}; add a rule to LAYERS")


def modules(root: Path = ROOT) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(tree: ast.AST):
    """Every node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def edges(mods: dict[str, Path]) -> tuple[dict[str, dict[str, int]], list[tuple[str, int, str]]]:
    """(module -> {imported module: line}, [(module, line, what) for each import by a string])."""
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    strings: list[tuple[str, int, str]] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_pkg = path.name == "__init__.py"

        def add(target: str, line: int, mod: str = mod) -> None:
            if target in mods and target != mod:
                graph[mod].setdefault(target, line)

        for node in _walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    add(a.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    add(sub if sub in mods else base, node.lineno)
            elif isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name in ("import_module", "__import__"):
                    arg = node.args[0] if node.args else None
                    what = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg) if arg else "?"
                    strings.append((mod, node.lineno, f"{name}({what})"))
    return graph, strings


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(graph: dict[str, dict[str, int]]) -> list[tuple[str, int, str]]:
    return sorted(
        (m, line, t) for m, targets in graph.items() for t, line in targets.items() if layer(t) > layer(m)
    )


def report(root: Path = ROOT) -> dict:
    mods = modules(root)
    graph, strings = edges(mods)
    return {
        "modules": len(mods),
        "edges": sum(len(t) for t in graph.values()),
        "circles": circles(graph),
        "upward": upward(graph),
        "strings": strings,
    }


def main(argv: list[str]) -> int:
    r = report()
    print(f"{r['modules']} modules, {r['edges']} imports")
    print(f"circles: {len(r['circles'])}")
    for c in r["circles"]:
        print("  " + " <-> ".join(c))
    print(f"upward imports: {len(r['upward'])} (at most {MAX_UPWARD})")
    for m, line, t in r["upward"]:
        print(f"  {m}:{line} -> {t}  ({LAYER_NAMES[layer(m)]} -> {LAYER_NAMES[layer(t)]})")
    print(f"imports by a string: {len(r['strings'])}")
    for m, line, what in r["strings"]:
        print(f"  {m}:{line} {what}")
    return 1 if r["circles"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
