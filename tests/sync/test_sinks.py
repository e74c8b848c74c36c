"""Outbox sinks (agent/sync/sink.py): a throwaway plugin written into tmp_path, registered by its own
import, receives the outbox's messages in a real SyncService with its own delivery state, whatever
MQTT does (and MQTT whatever it does)."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync import outbox, sink
from agent.sync.service import SyncService
from tests.sync.conftest import agent_config, wait_until

SITE, DEV = "site-a", "unit-1"

PLUGIN = '''
"""A throwaway sink: appends what it gets to a JSON-lines file; refuses to connect while `down` exists."""
import json
from pathlib import Path

from agent.sync.sink import register_sink


class FileSink:
    def __init__(self, name, out, down):
        self.name, self.out, self.down = name, Path(out), Path(down)
        self.connects = 0

    def connect(self):
        if self.down.exists():
            raise ConnectionError("the file sink is down")
        self.connects += 1

    def send(self, batch):
        if self.down.exists():
            raise ConnectionError("the file sink went down")
        with self.out.open("a") as f:
            for m in batch:
                f.write(json.dumps({"seq": m.seq, "kind": m.kind, "doc": json.loads(m.payload)}) + "\\n")
        return [m.seq for m in batch]

    def close(self):
        pass


register_sink("throwaway-file", lambda sc, cfg: FileSink(sc.sink_name, sc.options["out"], sc.options["down"]))
'''


def _load_plugin(tmp_path: Path, name: str) -> None:
    """Import the plugin from its file (as a plugin list would import it): that alone registers it."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(PLUGIN))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)


@pytest.fixture
def plugin(tmp_path, request):
    name = f"throwaway_sink_{abs(hash(request.node.nodeid))}"
    _load_plugin(tmp_path, name)
    yield tmp_path / "got.jsonl", tmp_path / "down"
    sys.modules.pop(name, None)
    sink._REGISTRY.pop("throwaway-file", None)


def _got(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def _sink_cfg(out: Path, down: Path, **over) -> dict:
    return {"type": "throwaway-file", "options": {"out": str(out), "down": str(down)}, **over}


def _cursor(db: Path, name: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return sink.cursor(conn, name)
    finally:
        conn.close()


def test_sink_gets_the_outbox_while_mqtt_is_down(tmp_path, plugin, agents):
    out, down = plugin
    cfg = agent_config(tmp_path, None, mqtt={"health_interval_s": 0.5})
    cfg["mqtt"].update(enabled=True, port=1)  # MQTT configured, broker unreachable
    cfg["sinks"] = [_sink_cfg(out, down)]
    a = agents(cfg).start()
    assert wait_until(
        lambda: {"summary", "health"} <= {m["kind"] for m in _got(out)} and len(_got(out)) >= 6, 20
    )
    h = a.svc.health()
    assert not h["connected"] and h["backlog"] >= 6  # nothing reached MQTT: every row still pending for it
    assert h["sinks"]["throwaway-file"]["connected"] and h["sinks"]["throwaway-file"]["acked"] >= 6
    a.stop()
    got = _got(out)
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(set(seqs))  # in order, once each
    assert all(m["doc"]["seq"] == m["seq"] and m["doc"]["device"] == DEV for m in got)
    assert _cursor(a.db_path, "throwaway-file") == seqs[-1]  # its own delivery state, committed


def test_mqtt_delivers_while_the_sink_is_down_then_the_sink_catches_up(tmp_path, broker, hub, plugin, agents):
    out, down = plugin
    down.write_text("")
    cfg = agent_config(tmp_path, broker)
    cfg["sinks"] = [_sink_cfg(out, down, retry_initial_s=0.1, retry_max_s=0.3, kinds=["summary"])]
    a = agents(cfg).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 4, 20)
    h = a.svc.health()["sinks"]["throwaway-file"]
    assert not h["connected"] and h["failures"] >= 1 and "down" in h["last_error"] and h["backlog"] >= 4
    assert _got(out) == []
    # retention keeps what MQTT delivered but the sink has not: nothing is pruned above its cursor (0)
    conn = sqlite3.connect(a.db_path)
    try:
        with conn:
            assert outbox.prune_delivered(conn, 1000) == 0
    finally:
        conn.close()
    down.unlink()
    top = a.svc.health()["last_seq"]
    assert wait_until(lambda: any(m["seq"] >= top for m in _got(out)), 20), a.svc.health()["sinks"]
    a.stop()
    got = _got(out)
    assert {m["kind"] for m in got} == {"summary"}  # only the kinds it takes
    conn = sqlite3.connect(a.db_path)
    try:
        summaries = [r[0] for r in conn.execute("SELECT seq FROM outbox WHERE kind = 'summary' ORDER BY seq")]
    finally:
        conn.close()
    assert [m["seq"] for m in got] == summaries[: len(got)] and got[-1]["seq"] >= top  # none missed


def test_unknown_sink_type_is_a_clear_error(tmp_path):
    cfg = parse_config({**agent_config(tmp_path, None), "sinks": [{"type": "nope"}]})
    db = Database(cfg.storage.path)
    w = Writer(db).start()
    try:
        with pytest.raises(ConfigError) as e:
            SyncService(cfg, cfg.storage.path, w)
        assert "unknown sink type 'nope'" in str(e.value) and "register_sink" in str(e.value)
    finally:
        w.stop()
        db.close()
