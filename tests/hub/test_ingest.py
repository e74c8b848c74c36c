"""Ingest into a real database (SQLite and PostgreSQL): idempotency, typed rows, ranges and gaps, statuses,
bad input. Messages are built like the agent's (docs/mqtt.md); the end-to-end tests use real agents."""

from __future__ import annotations

import json

import pytest

from agent.errors import ConfigError
from agent.hub import fleet
from agent.hub.db import HubDB, parse_dsn
from agent.hub.ingest import Ingestor

SITE, DEV = "site-a", "unit-1"
T = f"city/{SITE}/{DEV}"


def summary(seq: int, *, minute: int = 0, replay: bool = False) -> bytes:
    start = f"2026-12-01T10:{minute:02d}:00.000Z"
    end = f"2026-12-01T10:{minute + 1:02d}:00.000Z"
    doc = {
        "schema": "edge-agent/summary/1",
        "seq": seq,
        "session": 1,
        "device": DEV,
        "site": SITE,
        "ts": end,
        "window": {"start": start, "end": end},
        "clock_synced": True,
        "sections": {
            "analytics": {
                "cameras": {
                    "cam0": {
                        "volumes": {"main": {"northbound": {"car": 7, "truck": 1}, "southbound": {"car": 4}}},
                        "bins": [
                            {
                                "start": "2026-12-01T09:45:00.000Z",
                                "minutes": 15,
                                "coverage": 1.0,
                                "counts": {"main": {"northbound": {"car": 90}}},
                            }
                        ]
                        if minute == 0
                        else [],
                    }
                }
            },
            "sensors": {
                "aqi": {
                    "pm": {
                        "aqi": 57,
                        "category": "Moderate",
                        "dominant": "pm25",
                        "table": "epa-2024",
                        "pm2_5": 15.2,
                        "pm10": 20.0,
                    }
                },
                "gps": {"clock_trusted": True},
            },
            "inference": {"cameras": {"cam0": {"accelerator": "edgetpu"}}},
            "health": {"outbox_backlog": 3},
            "future_section": {"anything": [1, 2, 3]},
        },
    }
    if replay:
        doc["replay"] = True
    return json.dumps(doc).encode()


def event(seq: int, typ: str, data: dict) -> bytes:
    return json.dumps(
        {"schema": "edge-agent/event/1", "seq": seq, "session": 1, "device": DEV, "site": SITE,
         "ts": "2026-12-01T10:30:00.000Z", "type": typ, "data": data}
    ).encode()  # fmt: skip


def status(state: str, session: int, **kw) -> bytes:
    return json.dumps({"schema": "edge-agent/status/1", "state": state, "session": session, "device": DEV,
                       "site": SITE, "ts": "2026-12-01T10:00:00.000Z", **kw}).encode()  # fmt: skip


@pytest.fixture
def ing(dsn):
    db = HubDB(dsn)
    yield Ingestor(db, "city", gap_grace_s=0.0)
    db.close()


def test_the_same_message_twice_is_stored_once(ing):
    r1 = ing.ingest([(f"{T}/summary", summary(1), False)])
    r2 = ing.ingest([(f"{T}/summary", summary(1, replay=True), False), (f"{T}/summary", summary(1), False)])
    assert (r1.new, r1.duplicates, r2.new, r2.duplicates) == (1, 0, 0, 2)
    db = ing.db
    assert db.scalar("SELECT COUNT(*) FROM messages") == 1
    vols = db.query(
        "SELECT camera, line, direction, class, source, bin_s, count FROM volumes ORDER BY source, direction, class"
    )
    assert vols == [
        {"camera": "cam0", "line": "main", "direction": "northbound", "class": "car", "source": "bin", "bin_s": 900, "count": 90},
        {"camera": "cam0", "line": "main", "direction": "northbound", "class": "car", "source": "window", "bin_s": 60, "count": 7},
        {"camera": "cam0", "line": "main", "direction": "northbound", "class": "truck", "source": "window", "bin_s": 60, "count": 1},
        {"camera": "cam0", "line": "main", "direction": "southbound", "class": "car", "source": "window", "bin_s": 60, "count": 4},
    ]  # fmt: skip
    a = db.query("SELECT sensor, aqi, category, pm2_5 FROM aqi")
    assert a == [{"sensor": "pm", "aqi": 57, "category": "Moderate", "pm2_5": 15.2}]
    (u,) = fleet.units(db, now=0)
    assert u["received"] == 1 and u["duplicates"] == 2 and u["aqi"] == 57 and u["accelerator"] == "edgetpu"
    assert u["backlog"] == 3 and u["clock_untrusted"] is False
    # the whole message stays as JSON, including sections the hub does not know
    (p,) = fleet.payloads(db, SITE, DEV, "summary")
    assert p["sections"]["future_section"] == {"anything": [1, 2, 3]} and not p.get("replay")


def test_gaps_open_shrink_split_close_and_a_pruned_range_is_lost(ing):
    db = ing.db
    ing.ingest([(f"{T}/summary", summary(s, minute=s), False) for s in (1, 2, 8)])
    assert [(g["from_seq"], g["to_seq"], g["state"]) for g in fleet.unresolved(db, SITE, DEV)] == [
        (3, 7, "open")
    ]
    ing.ingest([(f"{T}/summary", summary(5, minute=5), False)])  # splits the hole in two
    assert [(g["from_seq"], g["to_seq"]) for g in fleet.unresolved(db, SITE, DEV)] == [(3, 4), (6, 7)]
    ing.ingest([(f"{T}/summary", summary(s, minute=s), False) for s in (3, 4, 6)])
    assert [(g["from_seq"], g["to_seq"]) for g in fleet.unresolved(db, SITE, DEV)] == [(7, 7)]
    # the unit pruned 7 before it could deliver it, and says so in a gap event (seq 9)
    ing.ingest([(f"{T}/event", event(9, "gap", {"from_seq": 7, "to_seq": 7, "count": 1, "kind": "summary",
                                                 "reason": "storage budget 1.0 MB exceeded"}), False)])  # fmt: skip
    left = fleet.unresolved(db, SITE, DEV)
    assert [(g["from_seq"], g["to_seq"], g["state"]) for g in left] == [(7, 7, "lost")]
    assert "storage budget" in left[0]["reason"]
    states = {r["state"]: r["n"] for r in db.query("SELECT state, COUNT(*) AS n FROM gaps GROUP BY state")}
    assert states == {"closed": 1, "lost": 1}
    (u,) = fleet.units(db, now=0)
    assert (u["gaps_open"], u["gaps_closed"], u["gaps_lost"], u["lost"], u["max_seq"]) == (0, 1, 1, 1, 9)
    assert [r["lo"] for r in db.query("SELECT lo FROM ranges")] == [1, 8]
    (e,) = db.query("SELECT type, data FROM events")
    assert e["type"] == "gap" and e["data"]["from_seq"] == 7


def test_replay_reply_reports_what_the_unit_no_longer_stores(ing):
    db = ing.db
    ing.ingest([(f"{T}/summary", summary(s, minute=s), False) for s in (1, 6)])
    reply = {"schema": "edge-agent/reply/1", "device": DEV, "site": SITE, "ts": "2026-12-01T10:00:00.000Z",
             "session": 1, "command": "replay", "id": "x", "ok": True,
             "result": {"from_seq": 2, "to_seq": 5, "queued": 1, "missing": [
                 {"from_seq": 2, "to_seq": 4, "reason": "deleted after delivery (retention)"},
                 {"from_seq": 9, "to_seq": 9, "reason": "not assigned yet"}]}}  # fmt: skip
    ing.ingest([(f"{T}/cmd/replay/reply", json.dumps(reply).encode(), False)])
    assert [(g["from_seq"], g["to_seq"], g["state"]) for g in fleet.unresolved(db, SITE, DEV)] == [
        (2, 4, "lost"),
        (5, 5, "open"),
    ]
    ing.ingest([(f"{T}/summary", summary(5, minute=5, replay=True), False)])
    assert [g["state"] for g in fleet.unresolved(db, SITE, DEV)] == ["lost"]
    assert db.scalar("SELECT COUNT(*) FROM replies WHERE command = 'replay'") == 1


def test_status_birth_last_will_and_a_stale_last_will(ing):
    db = ing.db
    ing.ingest(
        [
            (
                f"{T}/status",
                status("online", 5, seq_first_pending=10, accelerator="cpu", summary_interval_s=60),
                True,
            )
        ]
    )
    (u,) = fleet.units(db, now=0)
    assert (
        u["state"] == "online" and u["session"] == 5 and u["baseline_seq"] == 10 and u["accelerator"] == "cpu"
    )
    ing.ingest([(f"{T}/status", status("offline", 4, reason="connection lost (last will)"), False)])
    (u,) = fleet.units(db, now=0)
    assert u["state"] == "online" and u["stale_status"] == 1  # an older session's will, delivered late
    ing.ingest([(f"{T}/status", status("offline", 5, reason="connection lost (last will)"), False)])
    (u,) = fleet.units(db, now=0)
    assert u["state"] == "offline" and u["last_status"]["reason"].startswith("connection lost")
    # seqs below the birth's baseline were delivered before this hub listened: not a gap
    ing.ingest([(f"{T}/summary", summary(12, minute=12), False)])
    assert [(g["from_seq"], g["to_seq"]) for g in fleet.unresolved(db, SITE, DEV)] == [(10, 11)]


def test_bad_messages_are_counted_and_never_stop_the_batch(ing):
    bad_sections = json.loads(summary(2))
    bad_sections["ts"] = "yesterday"
    bad_sections["window"] = {"start": "x", "end": 5}
    bad_sections["sections"]["analytics"] = {
        "cameras": {"c": {"volumes": {"l": "oops"}, "bins": ["?", {"start": 3}]}}
    }
    bad_sections["sections"]["sensors"] = {"aqi": {"pm": {"aqi": "high"}}}
    batch = [
        (f"{T}/summary", b"\xff not json", False),
        (f"{T}/summary", b"[1, 2]", False),
        (f"{T}/summary", json.dumps({"seq": "one"}).encode(), False),
        (f"{T}/health", json.dumps({"seq": -3}).encode(), False),
        (f"{T}/summary", summary(1), False),
        (f"{T}/summary", json.dumps(bad_sections).encode(), False),
        (
            f"{T}/event",
            json.dumps({"seq": 3, "type": "x\x00y", "data": {"s": "nul \u0000 inside"}}).encode(),
            False,
        ),
        ("other/tree/x/summary", b"{}", False),
        (f"{T}/status", b"", True),
        (f"{T}/cmd/replay", b"{}", False),
    ]
    r = ing.ingest(batch)
    assert r.new == 3 and r.bad == 4 and r.ignored == 3
    assert fleet.seqs(ing.db, SITE, DEV) == [1, 2, 3]
    assert ing.db.scalar("SELECT COUNT(*) FROM volumes WHERE seq = 2") == 0


def test_migrations_are_recorded_and_run_once(dsn):
    a = HubDB(dsn)
    b = HubDB(dsn)  # a second worker starting on the same database
    assert a.schema_version() == b.schema_version() == 2 and b.migrate() == []
    a.close()
    b.close()


def test_dsn_errors_say_what_to_write(tmp_path):
    assert parse_dsn("sqlite:///hub.sqlite") == ("sqlite", "hub.sqlite")
    assert parse_dsn("sqlite:////var/lib/hub.sqlite") == ("sqlite", "/var/lib/hub.sqlite")
    assert parse_dsn("postgresql://hub@db/hub")[0] == "postgresql"
    for bad in ("mysql://x/y", "sqlite:/x", "sqlite:///", ""):
        with pytest.raises(ConfigError):
            parse_dsn(bad)


def bin_summary(seq: int, minute: int, bins: list[dict], *, replay: bool = False) -> bytes:
    """A 2.1 summary carrying only bins (each: start, counts, rev, late)."""
    start, end = f"2026-12-01T11:{minute:02d}:00.000Z", f"2026-12-01T11:{minute + 1:02d}:00.000Z"
    doc = {"schema": "edge-agent/summary/2", "schema_version": "2.1.0", "seq": seq, "session": 1,
           "device": DEV, "site": SITE, "ts": end, "window": {"start": start, "end": end, "seconds": 60.0},
           "clock_synced": True,
           "sections": {"analytics": {"cameras": {"cam0": {
               "volumes": {}, "zones": {}, "speeds": {}, "forecasts": {},
               "bins": [{"minutes": 15, "coverage": 1.0, **b} for b in bins]}}}}}  # fmt: skip
    if replay:
        doc["replay"] = True
    return json.dumps(doc).encode()


def _bins(db) -> dict[tuple[str, str, str], int]:
    return {
        (r["bin_start"][11:16], r["direction"], r["class"]): r["count"]
        for r in db.query("SELECT bin_start, direction, class, count FROM volumes WHERE source = 'bin'")
    }


def test_late_and_re_sent_bins_end_as_the_units_latest_counts(ing):
    b10 = "2026-12-01T10:45:00.000Z"
    nb = lambda **c: {"main": {"northbound": c}}  # noqa: E731
    # a bin first sent late (it belongs to a window already at the hub), then amended with a higher rev:
    # the newer version replaces the whole bin (the truck the unit now merges away is gone too)
    ing.ingest(
        [
            (
                f"{T}/summary",
                bin_summary(1, 0, [{"start": b10, "counts": nb(car=5, truck=1), "rev": 3, "late": True}]),
                False,
            )
        ]
    )
    assert _bins(ing.db) == {("10:45", "northbound", "car"): 5, ("10:45", "northbound", "truck"): 1}
    ing.ingest(
        [
            (
                f"{T}/summary",
                bin_summary(3, 2, [{"start": b10, "counts": nb(car=7), "rev": 9, "late": True}]),
                False,
            )
        ]
    )
    assert _bins(ing.db) == {("10:45", "northbound", "car"): 7}
    # an older version arriving after it (a replay of seq 2), and a duplicate of seq 3: no change
    r = ing.ingest(
        [
            (f"{T}/summary", bin_summary(2, 1, [{"start": b10, "counts": nb(car=6, bus=2), "rev": 5, "late": True}], replay=True), False),
            (f"{T}/summary", bin_summary(3, 2, [{"start": b10, "counts": nb(car=7), "rev": 9, "late": True}]), False),
        ]
    )  # fmt: skip
    assert (r.new, r.duplicates) == (1, 1)
    assert _bins(ing.db) == {("10:45", "northbound", "car"): 7}
    assert ing.db.scalar("SELECT SUM(count) FROM volumes WHERE source = 'bin'") == 7
    # two versions of one bin in one batch, out of order: the higher rev wins; another bin is independent
    b11 = "2026-12-01T11:00:00.000Z"
    ing.ingest(
        [
            (f"{T}/summary", bin_summary(5, 4, [{"start": b11, "counts": nb(car=4), "rev": 14, "late": True}]), False),
            (f"{T}/summary", bin_summary(4, 3, [{"start": b11, "counts": nb(car=3), "rev": 12, "late": False}]), False),
        ]
    )  # fmt: skip
    assert _bins(ing.db) == {("10:45", "northbound", "car"): 7, ("11:00", "northbound", "car"): 4}
    # a unit on contract 2.0 (no rev): the bin in the later summary (higher seq) replaces the earlier
    b12 = "2026-12-01T11:15:00.000Z"
    ing.ingest([(f"{T}/summary", bin_summary(7, 6, [{"start": b12, "counts": nb(car=2)}]), False)])
    ing.ingest([(f"{T}/summary", bin_summary(6, 5, [{"start": b12, "counts": nb(car=1)}]), False)])
    assert _bins(ing.db)[("11:15", "northbound", "car")] == 2
    assert ing.db.scalar("SELECT COUNT(*) FROM volumes WHERE source = 'bin'") == 3
    assert {r["rev"] for r in ing.db.query("SELECT rev FROM volumes WHERE source = 'bin'")} == {9, 14, None}
