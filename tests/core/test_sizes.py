"""Size guard (issue #13): no module over 400 lines, no function over 60 lines.

Today's offenders are listed below with their current size. The lists can only
shrink: a new offender fails, and a listed one that grew past its recorded size
fails too. When you split a listed module or function, lower or delete its entry.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOPS = ("agent", "firmware_bridge")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

MODULES: dict[str, int] = {}
FUNCTIONS: dict[str, int] = {}


def _functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, line count) of every function, methods as Class.name."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    found.append((name, (child.end_lineno or child.lineno) - child.lineno + 1))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _measure() -> tuple[dict[str, int], dict[str, int]]:
    modules: dict[str, int] = {}
    functions: dict[str, int] = {}
    for top in TOPS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            if lines > MAX_MODULE_LINES:
                modules[rel] = lines
            for name, size in _functions(ast.parse(text, filename=rel)):
                key = f"{rel}::{name}"
                if size > MAX_FUNCTION_LINES:
                    functions[key] = max(size, functions.get(key, 0))
    return modules, functions


def _violations(kind: str, limit: int, measured: dict[str, int], allowed: dict[str, int]) -> list[str]:
    bad = []
    for key, size in sorted(measured.items()):
        if key not in allowed:
            bad.append(
                f"error: {kind} {key} has {size} lines (limit {limit})\n"
                f"  fix: split it into named steps or cohesive modules"
            )
        elif size > allowed[key]:
            bad.append(
                f"error: {kind} {key} grew to {size} lines (allowlist says {allowed[key]})\n"
                f"  fix: split it, or at least don't grow it past {allowed[key]} lines"
            )
    return bad


def test_module_and_function_sizes() -> None:
    modules, functions = _measure()
    print(f"modules over {MAX_MODULE_LINES} lines: {len(modules)}")
    for key, size in sorted(modules.items(), key=lambda kv: -kv[1]):
        print(f"  {size:5d}  {key}")
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(functions)}")
    for key, size in sorted(functions.items(), key=lambda kv: -kv[1]):
        print(f"  {size:5d}  {key}")
    stale = sorted(set(MODULES) - set(modules)) + sorted(set(FUNCTIONS) - set(functions))
    if stale:
        print("allowlist entries now under the limit (delete them):", *stale, sep="\n  ")
    bad = _violations("module", MAX_MODULE_LINES, modules, MODULES) + _violations(
        "function", MAX_FUNCTION_LINES, functions, FUNCTIONS
    )
    assert not bad, "\n".join(bad)


def test_guard_catches_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 5))
    tree = ast.parse(f"class C:\n  def big(self):\n{body}\n")
    ((name, size),) = [f for f in _functions(tree) if f[0] == "C.big"]
    assert size > MAX_FUNCTION_LINES
    assert _violations("function", MAX_FUNCTION_LINES, {name: size}, {}), "new offender must fail"
    assert _violations("function", MAX_FUNCTION_LINES, {name: size}, {name: size - 1}), "growth must fail"
    assert not _violations("function", MAX_FUNCTION_LINES, {name: size}, {name: size})
