"""The outbox's v2 -> v3 migration (issue #13): a database filled by schema v2 (the last one with only
MQTT delivery state) opens under v3 (per-sink delivery state) without losing or changing a message,
and then every message still pending reaches the broker and a configured sink, once each, in order."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agent.store.db import Database, registered_components
from agent.sync import outbox
from agent.sync.topics import Topics
from tests.sync import test_sinks
from tests.sync.conftest import agent_config, wait_until
from tests.sync.test_sinks import _got, _sink_cfg

SITE, DEV = "site-a", "unit-1"
plugin = test_sinks.plugin  # the throwaway file sink (a fixture)
N = 1500
KINDS = ("summary", "summary", "health", "event")  # by seq % 4


def _v2_database(path: Path) -> None:
    """Only the sync component's migrations 1 and 2, exactly as a v2 agent left them, then N messages
    enqueued with the v2 tables: the first 300 delivered, 3 rejected, the rest pending."""
    migrations = {m.version: m for m in registered_components()["sync"]}
    assert set(migrations) >= {1, 2, 3} and max(migrations) == 3, "update this test for a v4"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute(
        "CREATE TABLE _migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT '', PRIMARY KEY (component, version))"
    )
    for v in (1, 2):
        raw.executescript(migrations[v].apply)
        raw.execute(
            "INSERT INTO _migrations (component, version, name) VALUES ('sync', ?, ?)",
            (v, migrations[v].name),
        )
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "sink_cursor" not in tables and "sink_queue" not in tables  # a real v2 file
    topics = Topics("city", SITE, DEV)
    raw.execute("BEGIN")
    for i in range(N):
        kind = KINDS[i % 4]
        prio = outbox.SUMMARY if kind == "summary" else outbox.LIVE
        body = {"device": DEV, "site": SITE, "ts": "2026-12-01T00:00:00Z", "i": i, "text": "é" * (i % 7)}
        outbox.enqueue(raw, topics.kind(kind), kind, body, priority=prio)
    outbox.mark(raw, range(1, 301), "delivered")
    outbox.mark(raw, [400, 401, 402], "rejected")
    raw.execute("COMMIT")
    raw.close()


def _rows(path: Path) -> dict[int, tuple]:
    conn = sqlite3.connect(path)
    try:
        return {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT o.seq, o.topic, o.kind, o.qos, o.retain, o.priority, o.created, o.state, p.payload"
                " FROM outbox o LEFT JOIN outbox_payload p USING (seq) ORDER BY o.seq"
            )
        }
    finally:
        conn.close()


def test_a_filled_v2_outbox_migrates_to_v3_and_drains_to_mqtt_and_a_sink(
    tmp_path, broker, hub, plugin, agents
):
    out, down = plugin
    cfg = agent_config(tmp_path, broker)
    cfg["sinks"] = [_sink_cfg(out, down)]
    db_path = Path(cfg["storage"]["path"])
    _v2_database(db_path)
    before = _rows(db_path)
    assert len(before) == N and sum(r[6] == "pending" for r in before.values()) == N - 303

    db = Database(db_path)  # what the agent does first: every migration pending for this file
    applied = [(c, v) for c, v in db.migrate() or []]
    migrated = dict(db.conn.execute("SELECT component, max(version) FROM _migrations GROUP BY component"))
    db.close()
    assert applied == [] and migrated["sync"] == 3  # Database() applied them when it opened
    assert _rows(db_path) == before  # not one message lost or changed, states included

    pending = sorted(s for s, r in before.items() if r[6] == "pending")
    a = agents(cfg).start()

    def delivered() -> bool:
        got = {k: set(hub.seqs(SITE, DEV, k)) for k in ("summary", "health", "event")}
        return all(s in got[before[s][1]] for s in pending)

    assert hub.wait_for(lambda h: delivered(), 60), a.svc.health()
    # the sink's cursor starts at 0: it gets every message still in the outbox, in order, once each
    assert wait_until(lambda: len(_got(out)) >= N, 30), a.svc.health()["sinks"]
    a.stop()
    got = _got(out)
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(set(seqs)) and set(range(1, N + 1)) <= set(seqs)
    assert all(m["doc"] == json.loads(before[m["seq"]][7]) for m in got if m["seq"] <= N)
    for kind in ("summary", "health", "event"):
        stored = hub.seqs(SITE, DEV, kind)
        assert len(stored) == len(set(stored))  # once each at the hub
        assert not {s for s in stored if s <= N} - {s for s, r in before.items() if r[1] == kind}
    after = _rows(db_path)
    assert all(after[s][6] == "delivered" for s in pending if s in after)  # acknowledged by PUBACK
    assert [after[s][6] for s in (400, 401, 402) if s in after] == ["rejected"] * 3
