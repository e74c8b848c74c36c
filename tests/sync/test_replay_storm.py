"""Replays against a real mosquitto: a storm of overlapping requests goes through the backfill cap,
is merged, is bounded (busy), and a seq past SQLite's range is a bad request (issue #16, item 2)."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.store.db import Database
from agent.sync import outbox
from tests.sync.conftest import USERS, agent_config
from tests.sync.test_mqtt import _commander

SITE, DEV = "site-a", "unit-1"


def _seed(path: str, n: int) -> None:
    """``n`` summaries already delivered (what a hub may ask to have again)."""
    db = Database(path)
    db.conn.execute("BEGIN")
    for i in range(n):
        outbox.enqueue(db.conn, f"city/{SITE}/{DEV}/summary", "summary", {"device": DEV, "i": i}, priority=1)
    outbox.mark(db.conn, range(1, n + 1), "delivered")
    db.conn.execute("COMMIT")
    db.close()


def _watch(broker):
    """A subscriber counting the replayed summaries as the broker hands them on."""
    got: list[tuple[float, int]] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=paho.MQTTv5)
    c.username_pw_set("hub", USERS["hub"])
    ready = threading.Event()
    c.on_connect = lambda cl, *a: cl.subscribe(f"city/{SITE}/{DEV}/summary", 1)
    c.on_subscribe = lambda *a: ready.set()

    def on_msg(cl, ud, m):
        d = json.loads(m.payload)
        if d.get("replay"):
            got.append((time.monotonic(), d["seq"]))

    c.on_message = on_msg
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


def test_a_replay_storm_is_capped_merged_and_bounded(tmp_path, broker, agents):
    rate = 20
    cfg = agent_config(
        tmp_path,
        broker,
        summary={"interval_s": 3600},
        mqtt={"commands": ["replay"], "backfill_rate_per_s": rate, "max_replay": 150, "max_inflight": 5},
    )
    _seed(cfg["storage"]["path"], 300)
    a = agents(cfg).start()
    assert a.svc.link.connected.wait(10)
    watcher, got = _watch(broker)
    client, ask = _commander(broker)
    try:
        t0 = time.monotonic()
        for i in range(10):  # ten overlapping requests at once, as a hub retrying in a loop would send
            r = ask("replay", json.dumps({"id": f"s{i}", "args": {"from_seq": 1, "to_seq": 100}}))
            assert r["ok"], r
        # within mqtt.max_replay alone, over it with what still waits (150 queued at most): busy
        r = ask("replay", json.dumps({"id": "big", "args": {"from_seq": 101, "to_seq": 200}}))
        assert not r["ok"] and r["error"]["code"] == "busy", r
        # a seq of 2^63 or more cannot name a stored message: a bad request, not a failure
        r = ask("replay", json.dumps({"id": "huge", "args": {"from_seq": 2**63, "to_seq": 2**63 + 5}}))
        assert not r["ok"] and r["error"]["code"] == "bad_request", r
        deadline = time.monotonic() + 60
        while len(got) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        # through the backfill cap: at most `rate` a second after a burst of max_inflight
        assert len(got) <= rate * elapsed + 5 + 2, (len(got), elapsed)
        assert len(got) >= 100, len(got)
        # merged: the ten requests re-sent each stored message about once, not ten times
        assert {s for _, s in got} == set(range(1, 101))
        time.sleep(0.5)  # let any (wrong) extra copies arrive before counting
        assert len(got) < 130, len(got)
        assert a.svc.publisher.stats()["replays_queued"] == 0
    finally:
        client.loop_stop()
        watcher.loop_stop()
