"""`edge-agent outbox ...` and `edge-agent hub`, the topic helpers, and the published documents."""

from __future__ import annotations

import json
import re

from agent.hub.worker import Hub, prefix_of
from agent.store.db import Database
from agent.sync import outbox
from agent.sync.topics import SCHEMAS, Topics, parse
from tests.sync.conftest import ROOT, USERS, agent_config, schema_validator


def test_outbox_cli_status_list_replay(tmp_path, cli):
    db_path = tmp_path / "a.sqlite"
    db = Database(db_path)
    db.conn.execute("BEGIN")
    for i in range(5):
        outbox.enqueue(db.conn, "city/s/d/summary", "summary", {"i": i}, priority=1)
    outbox.mark(db.conn, [1, 2, 3], "delivered")
    outbox.prune_delivered(db.conn, 1)
    db.conn.execute("COMMIT")
    db.close()
    r = cli("outbox", "status", "--db", str(db_path))
    assert r.returncode == 0, r.stderr
    assert "last seq:        5" in r.stdout and "pending:         2" in r.stdout
    st = json.loads(cli("outbox", "status", "--db", str(db_path), "--json").stdout)
    assert st["delivered"] == 2 and st["pruned"]["delivered"] == 1
    r = cli("outbox", "list", "--db", str(db_path), "--state", "pending")
    assert [int(line.split()[0]) for line in r.stdout.splitlines()[1:]] == [4, 5]
    r = cli("outbox", "replay", "--db", str(db_path), "--from", "1", "--to", "7")
    assert r.returncode == 0, r.stderr
    assert (
        "re-queued 2 message(s)" in r.stdout
        and "1..1: deleted after delivery" in r.stdout
        and "6..7: not assigned yet" in r.stdout
    )
    st = json.loads(cli("outbox", "status", "--db", str(db_path), "--json").stdout)
    assert st["pending"] == 4
    r = cli("outbox", "status", "--db", str(tmp_path / "nope.sqlite"))
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_every_command_has_help(cli):
    for args in (["outbox"], ["outbox", "status"], ["outbox", "list"], ["outbox", "replay"], ["hub"]):
        r = cli(*args, "--help")
        assert r.returncode == 0, r.stderr
        body = r.stdout.split("Options:")[0]
        assert len(body.strip().splitlines()) >= 3, f"{args} has no description"


def test_hub_cli_runs_and_shows_the_table(tmp_path, broker, agents, cli):
    agents(agent_config(tmp_path, broker)).start()
    pw = tmp_path / "hub.pass"
    pw.write_text(USERS["hub"])
    r = cli(
        "hub",
        "--broker",
        broker.url,
        "--topic",
        "city/#",
        "--db",
        str(tmp_path / "hub.sqlite"),
        "--username",
        "hub",
        "--password-file",
        str(pw),
        "--duration",
        "2.5",
        "--refresh",
        "1",
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "site-a" in r.stdout and "unit-1" in r.stdout and "online" in r.stdout
    r = cli("hub", "--broker", "http://x", "--db", str(tmp_path / "h2.sqlite"), "--duration", "0.1")
    assert r.returncode != 0 and "mqtt://" in r.stderr


def test_shared_subscription_splits_messages_between_hub_workers(tmp_path, broker, agents):
    hubs = [
        Hub(
            broker.url,
            "city/#",
            tmp_path / f"hub{i}.sqlite",
            share="workers",
            username="hub",
            password=USERS["hub"],
            replay=False,
        ).start()
        for i in range(2)
    ]
    try:
        for h in hubs:
            assert h.connected.wait(10)
        agents(agent_config(tmp_path, broker)).start()
        agents(agent_config(tmp_path, broker, device="unit-2")).start()

        def total(_h=None):
            return sum(len(h.seqs("site-a", d)) for h in hubs for d in ("unit-1", "unit-2"))

        assert hubs[0].wait_for(lambda _: total() >= 12, 20)
        # each message went to exactly one worker: no seq stored twice across the group
        for d in ("unit-1", "unit-2"):
            a, b = set(hubs[0].seqs("site-a", d)), set(hubs[1].seqs("site-a", d))
            assert not (a & b)
        assert all(len(h.seqs("site-a", "unit-1")) + len(h.seqs("site-a", "unit-2")) > 0 for h in hubs)
    finally:
        for h in hubs:
            h.stop()


def test_topics():
    t = Topics("city/v1", "s1", "d1")
    assert t.kind("summary") == "city/v1/s1/d1/summary"
    assert t.command_filters(["ping", "config/get", "replay"]) == [
        "city/v1/s1/d1/cmd/+",
        "city/v1/s1/d1/cmd/config/+",
    ]
    assert parse("city/v1/s1/d1/cmd/config/get/reply", "city/v1").command == "config/get"
    assert parse("city/v1/s1/d1/health", "city/v1").kind == "health"
    assert parse("other/s1/d1/health", "city/v1") is None
    assert prefix_of("$share/g/city/#") == "city" and prefix_of("city/v1/+/+/summary") == "city/v1"


def test_docs_describe_every_payload_and_topic():
    doc = (ROOT / "docs" / "mqtt.md").read_text()
    asyncapi = (ROOT / "docs" / "asyncapi.yaml").read_text()
    for kind, sid in SCHEMAS.items():
        schema_validator(kind)  # a valid Draft 2020-12 schema
        schema = json.loads((ROOT / "docs" / "schemas" / f"{kind}.schema.json").read_text())
        assert schema["properties"]["schema"]["const"] == sid
        assert f"schemas/{kind}.schema.json" in asyncapi and f"{kind}.schema.json" in doc
    import yaml

    api = yaml.safe_load(asyncapi)
    refs = re.findall(r"\$ref: \"([^\"]+)\"", asyncapi)
    assert api["asyncapi"].startswith("3.") and len(api["channels"]) == 6 and refs
    assert all((ROOT / "docs" / ref).exists() for ref in refs if not ref.startswith("#"))
    for topic in ("/summary", "/status", "/health", "/event", "/cmd/{name}", "/cmd/{name}/reply", "$share/"):
        assert topic in doc, topic
    for cmd in ("ping", "config/get", "health/get", "rebirth", "replay"):
        assert f"`{cmd}`" in doc
    from agent.config import example_config

    example = example_config()
    for key in ("topic_prefix", "max_inflight", "backfill_rate_per_s", "commands", "interval_s"):
        assert re.search(rf"^{key} = ", example, re.M) and f"`{key}`" in doc, (
            key
        )  # generated from the schema, named in the doc
