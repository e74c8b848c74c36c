"""End to end against a real mosquitto: delivery, outages, auth/TLS failures, status, commands, replay, gaps."""

from __future__ import annotations

import json
import sqlite3
import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.sync import outbox
from tests.sync.conftest import USERS, agent_config, schema_validator, wait_until

SITE, DEV = "site-a", "unit-1"


def _no_gap(n: int):
    return lambda h: len(h.seqs(SITE, DEV, "summary")) >= n and not h.gaps(SITE, DEV)


def test_every_summary_arrives_once_in_order_and_validates(tmp_path, broker, hub, agents):
    a = agents(agent_config(tmp_path, broker, mqtt={"health_interval_s": 1.0})).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 5 and h.seqs(SITE, DEV, "health"), 20)
    a.stop()
    docs = hub.payloads(SITE, DEV, "summary")
    seqs_all = hub.seqs(SITE, DEV)
    assert seqs_all == list(range(1, len(seqs_all) + 1))  # every seq, no gap
    dev = hub.devices()[0]
    assert dev["duplicates"] == 0 and dev["received"] == len(seqs_all)
    windows = [d["window"]["start"] for d in docs]
    assert windows == sorted(windows) and len(set(windows)) == len(windows)  # in order, once each
    v = schema_validator("summary")
    for d in docs:
        v.validate(d)
        assert d["session"] == 1
    for d in hub.payloads(SITE, DEV, "health"):
        schema_validator("health").validate(d)
    status = dev["last_status"]
    schema_validator("status").validate(status)
    assert (
        status["state"] == "offline" and status["reason"] == "stopped"
    )  # a clean stop publishes offline itself


def test_broker_outage_no_gap_after_reconnect(tmp_path, broker, hub, agents):
    a = agents(agent_config(tmp_path, broker)).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 2, 20)
    broker.stop()  # persistence off: sessions and retained messages are gone too
    assert wait_until(lambda: not a.svc.health()["connected"], 10)
    attempts = a.svc.health()["connect_attempts"]
    assert wait_until(
        lambda: a.svc.health()["backlog_by_kind"].get("summary", 0) >= 4, 15
    )  # buffering meanwhile
    # it kept trying while the broker was down (backoff 0.2 s .. 1 s here); read before the broker is back,
    # so an attempt already under way when it starts cannot blur the count
    assert a.svc.health()["connect_attempts"] > attempts
    broker.start()
    assert hub.connected.wait(30) or hub.wait_for(lambda h: h.connected.is_set(), 30)
    assert wait_until(lambda: a.svc.health()["connected"] and a.svc.health()["backlog"] == 0, 30), (
        a.svc.health()
    )
    top = a.svc.health()["last_seq"]
    assert hub.wait_for(
        lambda h: h.devices() and h.devices()[0]["max_seq"] >= top and not h.gaps(SITE, DEV), 30
    ), hub.gaps(SITE, DEV)
    assert a.svc.health()["reconnects"] >= 1
    assert set(range(1, top + 1)) <= set(hub.seqs(SITE, DEV))


def test_sigkill_mid_drain_loses_nothing(tmp_path, broker, hub, agent_procs):
    cfg = agent_config(tmp_path, broker, mqtt={"backfill_rate_per_s": 400}, summary={"interval_s": 3600})
    from agent.store.db import Database

    db = Database(cfg["storage"]["path"])  # a backlog of 2000 summaries, as after a long outage
    db.conn.execute("BEGIN")
    for i in range(2000):
        outbox.enqueue(
            db.conn,
            f"city/{SITE}/{DEV}/summary",
            "summary",
            {"device": DEV, "site": SITE, "i": i, "pad": "x" * 300},
            priority=outbox.SUMMARY,
        )
    db.conn.execute("COMMIT")
    db.close()
    p = agent_procs(tmp_path, cfg).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 600, 30), p.log_text()[-3000:]
    p.kill()  # SIGKILL in the middle of the drain
    got = len(hub.seqs(SITE, DEV, "summary"))
    assert got < 2000, "the drain finished before the kill; the test proves nothing"
    assert hub.wait_for(lambda h: h.devices()[0]["state"] == "offline", 15)  # the last will
    p2 = agent_procs(tmp_path, cfg, "agent2").start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 2000 and not h.gaps(SITE, DEV), 60), (
        hub.gaps(SITE, DEV),
        p2.log_text()[-3000:],
    )
    assert hub.seqs(SITE, DEV, "summary") == list(range(1, 2001))  # every seq once in the hub's store
    assert hub.wait_for(lambda h: h.devices()[0]["state"] == "online" and h.devices()[0]["session"] == 2, 10)
    assert p2.terminate() == 0
    assert hub.wait_for(lambda h: h.devices()[0]["state"] == "offline", 10)
    assert hub.devices()[0]["last_status"]["reason"] == "stopped"


def test_last_will_on_death_and_retained_online(tmp_path, broker, hub, agent_procs):
    p = agent_procs(tmp_path, agent_config(tmp_path, broker, summary={"interval_s": 3600})).start()
    assert hub.wait_for(lambda h: h.devices() and h.devices()[0]["state"] == "online", 20), p.log_text()
    # a late subscriber gets the retained birth
    got = threading.Event()
    msgs: list[dict] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="late", protocol=paho.MQTTv5)
    c.username_pw_set("hub", USERS["hub"])
    c.on_connect = lambda cl, *a: cl.subscribe(f"city/{SITE}/{DEV}/status", qos=1)
    c.on_message = lambda cl, ud, m: (msgs.append({"retain": m.retain, **json.loads(m.payload)}), got.set())
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        assert got.wait(10)
        birth = msgs[0]
        assert birth["retain"] and birth["state"] == "online" and birth["session"] == 1
        for k in ("agent_version", "model", "accelerator", "config_hash", "seq_last", "seq_first_pending"):
            assert k in birth
        schema_validator("status").validate({k: v for k, v in birth.items() if k != "retain"})
        got.clear()
        p.kill()
        assert got.wait(10)
        death = msgs[-1]
        assert death["state"] == "offline" and death["session"] == 1 and "last will" in death["reason"]
    finally:
        c.loop_stop()
    assert hub.wait_for(lambda h: h.devices()[0]["state"] == "offline", 10)


def test_stale_last_will_is_ignored_by_the_hub(tmp_path, broker, hub):
    hub.handle(
        f"city/{SITE}/{DEV}/status",
        json.dumps({"state": "online", "session": 5, "seq_first_pending": 1}).encode(),
    )
    hub.handle(f"city/{SITE}/{DEV}/status", json.dumps({"state": "offline", "session": 4}).encode())
    d = hub.devices()[0]
    assert d["state"] == "online" and d["session"] == 5 and d["stale_status"] == 1


@pytest.mark.parametrize("case", ["wrong-password", "untrusted-cert"])
def test_connect_failures_are_clear_retried_and_keep_messages(tmp_path, broker, certs, agents, case):
    over: dict = {"summary": {"interval_s": 0.3}}
    if case == "wrong-password":
        (tmp_path / "bad.pass").write_text("not-the-password")
        over["mqtt"] = {"password_file": str(tmp_path / "bad.pass")}
        expect = "check mqtt.username and the password"
    else:
        over["mqtt"] = {"port": broker.tls_port, "tls": {"enabled": True, "ca_file": str(certs.rogue_ca)}}
        expect = "certificate is not trusted"
    a = agents(agent_config(tmp_path, broker, **over)).start()
    assert wait_until(lambda: a.svc.health()["connect_attempts"] >= 3, 15)
    h = a.svc.health()
    assert expect in (h["last_error"] or ""), h
    assert not h["connected"] and h["published"] == 0
    assert wait_until(lambda: a.svc.health()["backlog_by_kind"].get("summary", 0) >= 3, 10)  # kept, waiting
    assert "pw-unit-1" not in (h["last_error"] or "")


def test_mutual_tls_delivers(tmp_path, broker, certs, hub, agents):
    cfg = agent_config(
        tmp_path,
        broker,
        mqtt={
            "port": broker.tls_port,
            "host": "localhost",
            "tls": {
                "enabled": True,
                "ca_file": str(certs.ca),
                "cert_file": str(certs.client_cert),
                "key_file": str(certs.client_key),
            },
        },
    )
    agents(cfg).start()
    assert hub.wait_for(_no_gap(2), 20)


def _commander(broker):
    replies: list[dict] = []
    cond = threading.Condition()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="commander", protocol=paho.MQTTv5)
    c.username_pw_set("hub", USERS["hub"])
    ready = threading.Event()

    def on_msg(cl, ud, m):
        with cond:
            replies.append({"topic": m.topic, **json.loads(m.payload)})
            cond.notify_all()

    c.on_connect = lambda cl, *a: cl.subscribe(
        [(f"city/{SITE}/{DEV}/cmd/+/reply", 1), (f"city/{SITE}/{DEV}/cmd/+/+/reply", 1)]
    )
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = on_msg
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert ready.wait(10)

    def ask(name: str, payload: bytes | str, n: int = 1) -> dict:
        start = len(replies)
        c.publish(f"city/{SITE}/{DEV}/cmd/{name}", payload, qos=1)
        with cond:
            assert cond.wait_for(lambda: len(replies) >= start + n, 10), f"no reply to {name}"
        return replies[start]

    return c, ask


def test_commands_and_malformed_ones_get_replies(tmp_path, broker, agents):
    cfg = agent_config(
        tmp_path, broker, summary={"interval_s": 3600}, mqtt={"commands": ["ping", "config/get", "replay"]}
    )
    cfg["mqtt"].pop("password_file")
    cfg["mqtt"]["password"] = USERS["unit-1"]
    a = agents(cfg).start()
    assert a.svc.link.connected.wait(10)
    client, ask = _commander(broker)
    try:
        v = schema_validator("reply")
        r = ask("ping", json.dumps({"id": "p1"}))
        assert r["ok"] and r["id"] == "p1" and r["result"]["pong"] and r["topic"].endswith("/cmd/ping/reply")
        r = ask("config/get", json.dumps({"id": 7}))
        assert (
            r["ok"]
            and r["result"]["config"]["mqtt"]["password"] == "***"
            and USERS["unit-1"] not in json.dumps(r)
        )
        cases = [
            ("ping", b"\xff\xfe not json", "bad_json"),
            ("ping", b"[1, 2]", "bad_request"),
            ("ping", json.dumps({"id": {"x": 1}}), "bad_request"),
            ("ping", json.dumps({"id": "a", "args": 5}), "bad_request"),
            ("frobnicate", json.dumps({"id": "u"}), "unknown_command"),
            ("rebirth", json.dumps({"id": "d"}), "disabled"),
            ("replay", json.dumps({"id": "r1", "args": {"from_seq": "one", "to_seq": 2}}), "bad_request"),
            ("replay", json.dumps({"id": "r2", "args": {"from_seq": 5, "to_seq": 2}}), "bad_request"),
            ("replay", json.dumps({"id": "r3", "args": {"from_seq": 1, "to_seq": 10**6}}), "too_large"),
            ("replay", b"x" * (70 * 1024), "too_large"),
        ]
        for name, payload, code in cases:
            r = ask(name, payload)
            v.validate({k: x for k, x in r.items() if k != "topic"})
            assert not r["ok"] and r["error"]["code"] == code, (name, payload[:40], r)
        r = ask("ping", json.dumps({"id": "still-alive"}))
        assert r["ok"] and r["id"] == "still-alive"
        assert a.svc.health()["connected"] and a.svc.commands.alive
    finally:
        client.loop_stop()


def test_backlog_of_several_batches_drains_in_order_and_a_missing_text_is_rejected(
    tmp_path, broker, hub, agents
):
    """More rows than one read, one hand-over to paho and one batch of marks: every seq arrives in order,
    each is marked delivered; a row whose text was removed behind the agent's back is marked rejected
    and named, and does not hold up the rest."""
    a = agents(agent_config(tmp_path, broker, mqtt={"backfill_rate_per_s": 0}, summary={"interval_s": 3600}))
    topic = a.svc.topics.kind("summary")
    n = 2600

    def fill(conn):
        for i in range(n):
            outbox.enqueue(
                conn,
                topic,
                "summary",
                {"device": DEV, "site": SITE, "ts": "2026-01-01T00:00:00Z", "i": i},
                priority=outbox.SUMMARY,
            )

    assert outbox.submit(a.writer, fill, kind="test", block=True) and a.writer.flush()
    first = a.database.reader().execute("SELECT MIN(seq) FROM outbox WHERE kind = 'summary'").fetchone()[0]
    bad = first + 1500
    c = sqlite3.connect(a.db_path, isolation_level=None)
    c.execute("DELETE FROM outbox_payload WHERE seq = ?", (bad,))
    c.close()
    a.start()
    assert wait_until(lambda: a.svc.health()["backlog"] == 0, 60), a.svc.health()
    want = [s for s in range(first, first + n) if s != bad]
    assert hub.wait_for(lambda h: set(want) <= set(h.seqs(SITE, DEV, "summary")), 30)
    got = [s for s in hub.seqs(SITE, DEV, "summary") if first <= s < first + n]
    assert got == want and hub.devices()[0]["duplicates"] == 0  # nothing twice, only the bad one missing
    conn = a.database.reader()
    assert dict(
        conn.execute(
            "SELECT state, COUNT(*) FROM outbox WHERE kind = 'summary' AND seq >= ? GROUP BY state", (first,)
        )
    ) == {"delivered": n - 1, "rejected": 1}
    assert conn.execute("SELECT state FROM outbox WHERE seq = ?", (bad,)).fetchone()[0] == "rejected"
    conn.close()
    assert f"seq {bad}" in (a.svc.publisher.last_error or "")
