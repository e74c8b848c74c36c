"""End to end on a real mosquitto with real agents (the agent's own sync code), on SQLite and PostgreSQL:
gaps from messages the broker dropped are repaired with cmd/replay; ranges the unit no longer stores are
reported lost with its reason; two workers on a shared subscription split the messages, and one is
SIGKILLed mid-run without leaving a gap."""

from __future__ import annotations

import pytest

from agent.hub import fleet
from agent.hub.db import HubDB
from agent.hub.worker import Hub
from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.retention import Retention
from agent.sync.topics import Topics
from tests.hub.conftest import USERS
from tests.sync.conftest import agent_config, wait_until

SITE, DEV = "site-a", "unit-1"


def make_hub(broker, dsn, **kw) -> Hub:
    opts = dict(
        username="hub", password=USERS["hub"], gap_grace_s=0.5, replay_retry_s=2.0, replay_retry_max_s=4.0
    )
    opts.update(kw)
    h = Hub(broker.url, "city/#", dsn, **opts).start()
    assert h.connected.wait(15), h.last_error
    return h


def holds_all(h: Hub, site: str, dev: str, top: int) -> bool:
    s = h.seqs(site, dev)
    return len(s) >= top and s[:top] == list(range(1, top + 1)) and not h.gaps(site, dev)


def test_gap_from_messages_the_broker_dropped_is_replayed(tmp_path, broker, agents, dsn):
    a = agents(agent_config(tmp_path, broker, summary={"interval_s": 0.3})).start()
    h = make_hub(broker, dsn)
    try:
        assert h.wait_for(lambda x: len(x.seqs(SITE, DEV, "summary")) >= 3, 30)
    finally:
        h.stop()  # clean session: while no hub listens, the broker drops what the unit publishes
    top0 = a.svc.health()["last_seq"]
    assert wait_until(lambda: a.svc.health()["last_seq"] >= top0 + 5 and a.svc.health()["backlog"] == 0, 30)
    dropped_to = a.svc.health()["last_seq"]
    h = make_hub(broker, dsn)  # a new worker on the same database sees the hole and asks for it
    try:
        assert h.wait_for(lambda x: holds_all(x, SITE, DEV, dropped_to + 2), 60), (
            h.gaps(SITE, DEV),
            h.seqs(SITE, DEV),
        )
        assert h.replays_requested >= 1
        replayed = [p["seq"] for p in h.payloads(SITE, DEV, "summary") if p.get("replay")]
        assert replayed and min(replayed) <= dropped_to
        (u,) = h.devices()
        assert u["gaps_closed"] >= 1 and u["gaps_open"] == 0 and u["lost"] == 0
        replies = h.query("SELECT payload FROM replies WHERE command = 'replay'")
        assert replies and all(r["payload"]["ok"] for r in replies)
    finally:
        h.stop()


def test_a_range_pruned_before_delivery_is_reported_lost_with_its_reason(tmp_path, broker, agents, dsn):
    cfg = agent_config(tmp_path, broker, summary={"interval_s": 3600})
    db = Database(cfg["storage"]["path"])
    db.conn.execute("BEGIN")
    for _ in range(300):
        outbox.enqueue(db.conn, f"city/{SITE}/{DEV}/summary", "summary",
                       {"device": DEV, "site": SITE, "pad": "x" * 2000}, priority=outbox.SUMMARY)  # fmt: skip
    db.conn.execute("COMMIT")
    w = Writer(db, max_delay_s=0.01).start()
    r = Retention(1000, w, db.reader, Topics("city", SITE, DEV), chunk=50)
    r.budget = int(r.used() * 0.5)
    pruned = r.run()["removed"]["undelivered summaries"]
    assert pruned > 0
    w.stop()
    db.close()
    h = make_hub(broker, dsn)
    try:
        a = agents(cfg).start()
        assert h.wait_for(lambda x: x.devices() and x.devices()[0]["max_seq"] == a.svc.health()["last_seq"] and not
                          [g for g in x.gaps(SITE, DEV) if g["state"] == "open"], 60), h.gaps(SITE, DEV)  # fmt: skip
        gaps = h.gaps(SITE, DEV)
        assert [(g["from_seq"], g["to_seq"], g["state"]) for g in gaps] == [(1, pruned, "lost")]
        assert "storage budget" in gaps[0]["reason"]
        (u,) = h.devices()
        assert u["lost"] == pruned and u["received"] == u["max_seq"] - pruned
        events = h.query("SELECT data FROM events WHERE type = 'gap' ORDER BY seq")
        assert sum(e["data"]["count"] for e in events) == pruned
    finally:
        h.stop()


def test_a_range_deleted_after_delivery_is_reported_lost_by_the_replay_reply(tmp_path, broker, agents, dsn):
    a = agents(agent_config(tmp_path, broker, summary={"interval_s": 0.3})).start()
    h = make_hub(broker, dsn)
    try:
        assert h.wait_for(lambda x: len(x.seqs(SITE, DEV, "summary")) >= 2, 30)
    finally:
        h.stop()
    top0 = a.svc.health()["last_seq"]
    assert wait_until(lambda: a.svc.health()["last_seq"] >= top0 + 4 and a.svc.health()["backlog"] == 0, 30)
    # the unit's retention removes what it delivered (to a broker that had no one to give it to)
    assert outbox.submit(a.writer, lambda c: outbox.prune_delivered(c, 100000), kind="test", block=True)
    assert a.writer.flush(10)
    gone_to = a.svc.health()["last_seq"]
    h = make_hub(broker, dsn)
    try:

        def settled(x: Hub) -> bool:
            g = x.gaps(SITE, DEV)
            return bool(g) and all(i["state"] == "lost" for i in g) and x.devices()[0]["max_seq"] > gone_to

        assert h.wait_for(settled, 60), h.gaps(SITE, DEV)
        lost = h.gaps(SITE, DEV)
        assert all("deleted after delivery" in g["reason"] for g in lost)
        assert lost[-1]["to_seq"] <= gone_to and h.devices()[0]["lost"] >= gone_to - top0
    finally:
        h.stop()


@pytest.mark.slow
def test_two_workers_split_a_shared_subscription_and_one_dies_without_a_gap(
    tmp_path, broker, agents, hub_procs, dsn
):
    pw = tmp_path / "hub.pass"
    pw.write_text(USERS["hub"])
    args = ["--broker", broker.url, "--dsn", dsn, "--share", "hub", "--username", "hub", "--password-file", str(pw),
            "--gap-grace", "1", "--replay-retry", "2", "--replay-retry-max", "4", "--quiet"]  # fmt: skip
    w = [hub_procs(tmp_path, f"worker{i}", args).start() for i in range(2)]
    view: HubDB | None = None  # opened once the workers created the schema
    try:
        units = [
            agents(
                agent_config(
                    tmp_path, broker, device=d, summary={"interval_s": 0.2}, mqtt={"health_interval_s": 0.5}
                )
            ).start()  # fmt: skip
            for d in ("unit-1", "unit-2")
        ]

        def workers():
            return {r["name"]: r for r in fleet.workers(view)} if view else {}

        assert wait_until(lambda: (tmp_path / "hub.sqlite").exists() or dsn.startswith("postgres"), 30)
        assert wait_until(lambda: _try_open(dsn) is not None, 30)
        view = HubDB(dsn, migrate=False)
        # both workers get part of the stream
        assert wait_until(lambda: len(workers()) == 2 and all(r["ingested"] > 5 for r in workers().values()), 60), (
            workers(), w[0].log_text()[-2000:], w[1].log_text()[-2000:])  # fmt: skip
        w[0].kill()  # SIGKILL mid-run: whatever it had taken and not committed is never acked
        tops = {d: u.svc.health()["last_seq"] for d, u in zip(("unit-1", "unit-2"), units)}
        h = lambda: fleet.units(view)  # noqa: E731

        def converged() -> bool:
            rows = {r["device"]: r for r in h()}
            return all(
                d in rows and rows[d]["max_seq"] >= tops[d] + 10 and not fleet.unresolved(view, SITE, d)
                and fleet.seqs(view, SITE, d) == list(range(1, rows[d]["max_seq"] + 1))
                for d in tops
            )  # fmt: skip

        assert wait_until(converged, 90, every_s=0.5), (
            {d: fleet.unresolved(view, SITE, d) for d in tops}, w[1].log_text()[-3000:])  # fmt: skip
        rows = {r["device"]: r for r in h()}
        assert all(rows[d]["received"] == rows[d]["max_seq"] for d in tops)  # each seq stored once
        assert w[1].proc.poll() is None
    finally:
        if view:
            view.close()


def _try_open(dsn: str):
    try:
        d = HubDB(dsn, migrate=False)
        ok = d.scalar("SELECT COUNT(*) FROM workers")
        d.close()
        return ok
    except Exception:  # noqa: BLE001 - not created yet
        return None
