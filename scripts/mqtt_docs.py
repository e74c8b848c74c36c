"""Write docs/mqtt.md's contract part (field tables and examples) from the schemas and real payloads.

    .venv/bin/python scripts/mqtt_docs.py --record          # run a live agent (tests/contract/live.py)
    .venv/bin/python scripts/mqtt_docs.py --from FILE.json  # a recording (the contract test leaves
                                                            # test-artifacts/contract/recording.json)
    .venv/bin/python scripts/mqtt_docs.py                   # only re-render from docs/examples/

The examples (docs/examples/<kind>*.json) are real payloads picked from the recording; the tables
come from docs/schemas. tests/contract/test_docs.py checks that docs/mqtt.md is what this script
renders from the committed examples and schemas, and that every example validates.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "mqtt.md"
EXAMPLES = ROOT / "docs" / "examples"
SCHEMAS = ROOT / "docs" / "schemas"
START, END = "<!-- contract:start (scripts/mqtt_docs.py) -->", "<!-- contract:end -->"

#: example files: name -> (kind, what it shows)
EXAMPLE_FILES = {
    "summary": ("summary", "a summary with every part on"),
    "health": ("health", "a health message"),
    "status-online": ("status", "the birth"),
    "status-offline": ("status", "the death after a clean stop"),
    "reply-ok": ("reply", "a reply (ping)"),
    "reply-error": ("reply", "an error reply (a request that is not JSON)"),
}
#: the tables: (title, kind, JSON path inside the payload)
TABLES = [
    ("Envelope (every summary, health and event)", "summary", ""),
    ("Summary: `window`", "summary", "window"),
    ("Summary section `counts`", "summary", "sections.counts"),
    ("Summary section `inference`", "summary", "sections.inference"),
    ("Summary section `health` (also the health message's `health`)", "summary", "sections.health"),
    ("Summary section `analytics`", "summary", "sections.analytics"),
    ("Summary section `sensors`", "summary", "sections.sensors"),
    ("Summary section `gps`", "summary", "sections.gps"),
    ("Summary section `incidents`", "summary", "sections.incidents"),
    ("Health message", "health", ""),
    ("Health message: `pipeline`", "health", "pipeline"),
    ("Event", "event", ""),
    ("Status (birth and death)", "status", ""),
    ("Command request", "command", ""),
    ("Reply", "reply", ""),
]


def _kind(topic: str) -> str:
    rest = topic.split("/")[3:]
    if rest and rest[0] == "cmd":
        return "reply" if rest[-1] == "reply" else "command"
    return rest[0]


def pick_examples(msgs: list[dict[str, Any]]) -> dict[str, Any]:
    """One real payload per example file, from a recording."""
    by: dict[str, list[Any]] = {}
    for m in msgs:
        by.setdefault(_kind(m["topic"]), []).append(m["payload"])

    def richness(p: dict) -> int:
        return len(json.dumps(p))

    def has_bins(p: dict) -> bool:
        return any(c.get("bins") for c in p["sections"].get("analytics", {}).get("cameras", {}).values())

    summaries = [p for p in by["summary"] if has_bins(p) and p["sections"].get("gps")] or [
        p for p in by["summary"] if p["sections"].get("analytics") and p["sections"].get("gps")
    ]
    out = {
        "summary": max(summaries or by["summary"], key=richness),
        "health": by["health"][-1],
        "status-online": next(p for p in by["status"] if p["state"] == "online"),
        "status-offline": next(p for p in by["status"] if p["state"] == "offline"),
        "reply-ok": next(p for p in by["reply"] if p["ok"] and p["command"] == "ping"),
        "reply-error": next(p for p in by["reply"] if not p["ok"] and p["error"]["code"] == "bad_json"),
    }
    return out


def _type(s: dict) -> str:
    if "const" in s:
        return f"`{json.dumps(s['const'])}`"
    if "enum" in s:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in s["enum"])
    t = s.get("type", "any")
    types = t if isinstance(t, list) else [t]
    base = [x for x in types if x != "null"]
    name = " \\| ".join(base) or "null"
    if "object" in base and isinstance(s.get("additionalProperties"), dict):
        name = f"map {s.get('x-key', 'name')} →"
    if "array" in base and isinstance(s.get("items"), dict) and s["items"].get("type") == "object":
        name = "array of objects"
    return name + (" \\| null" if "null" in types else "")


def _rows(s: dict, path: str, required: bool, rows: list[tuple[str, str, str, str, str]]) -> None:
    rows.append(
        (
            f"`{path}`" if path else "(payload)",
            _type(s),
            "yes" if required else "no",
            s.get("x-unit", ""),
            s.get("description", "").replace("|", "\\|").replace("\n", " "),
        )
    )
    req = set(s.get("required", []))
    for k, sub in (s.get("properties") or {}).items():
        _rows(sub, f"{path}.{k}" if path else k, k in req, rows)
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        _rows(ap, f"{path}.{{{s.get('x-key', 'name')}}}", True, rows)
    items = s.get("items")
    if isinstance(items, dict) and items.get("type") == "object":
        _rows(items, f"{path}[]", True, rows)


def _at(schema: dict, path: str) -> dict:
    s = schema
    for part in [p for p in path.split(".") if p]:
        s = s["properties"][part]
    return s


def table(kind: str, path: str) -> str:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    s = _at(schema, path)
    rows: list[tuple[str, str, str, str, str]] = []
    if not path:  # the envelope: only the scalar top-level fields
        req = set(s.get("required", []))
        for k, sub in s["properties"].items():
            if (kind == "summary" and k in ("sections", "window", "errors")) or (
                kind == "health" and k in ("health", "pipeline", "sync", "writer")
            ):
                rows.append(
                    (f"`{k}`", _type(sub), "yes" if k in req else "no", "", sub.get("description", ""))
                )
                continue
            _rows(sub, k, k in req, rows)
    else:
        req = path.split(".")[-1] in set(_at(schema, ".".join(path.split(".")[:-1])).get("required", []))
        _rows(s, path, req, rows)
    out = ["| field | type | required | unit | meaning |", "|---|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(out)


def render_block() -> str:
    from agent.sync.topics import SCHEMA_VERSION

    parts = [
        START,
        f"Generated from [schemas/](schemas/) (contract {SCHEMA_VERSION}) and the real payloads in "
        "[examples/](examples/) by `scripts/mqtt_docs.py`; `tests/contract/test_docs.py` keeps it in step. "
        "`{name}` in a path is a map key (a camera, line, direction, class, sensor, metric ...). "
        '"required: no" means the key may be absent; a type with `null` means the key is present with null '
        "(the meaning says when).",
        "",
    ]
    for title, kind, path in TABLES:
        parts += [f"#### {title}", "", table(kind, path), ""]
    parts += ["### Examples (real payloads)", ""]
    for name, (kind, what) in EXAMPLE_FILES.items():
        text = (EXAMPLES / f"{name}.json").read_text().rstrip("\n")
        parts += [
            f'<details><summary>{kind}: {what} (<a href="examples/{name}.json">examples/{name}.json</a>)</summary>',
            "",
            "```json",
            text,
            "```",
            "",
            "</details>",
            "",
        ]
    parts.append(END)
    return "\n".join(parts)


def render_doc(doc: str) -> str:
    a, b = doc.index(START), doc.index(END) + len(END)
    return doc[:a] + render_block() + doc[b:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--record", action="store_true", help="run a live agent and record it")
    g.add_argument("--from", dest="src", type=Path, help="a recording (JSON list of {topic, payload})")
    a = ap.parse_args()
    msgs = None
    if a.record:
        from tests.conftest import mirror_dir
        from tests.contract.live import record

        with tempfile.TemporaryDirectory() as d:
            msgs, _, _ = record(Path(d), mirror_dir() / "media" / "4ku_traffic.mp4", mirror_dir(), log=print)
    elif a.src:
        msgs = json.loads(a.src.read_text())
    if msgs is not None:
        EXAMPLES.mkdir(parents=True, exist_ok=True)
        for name, payload in pick_examples(msgs).items():
            (EXAMPLES / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    DOC.write_text(render_doc(DOC.read_text()))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
