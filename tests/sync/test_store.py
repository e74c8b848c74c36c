"""Outbox, summaries, retention and a full disk: real SQLite files and the real writer, no broker."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest

from agent.sections import _SECTIONS, register_summary_section
from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync import outbox, outbox_read
from agent.sync.retention import Retention
from agent.sync.summary import SummaryBuilder
from agent.sync.topics import Topics
from agent.timefmt import iso_utc
from tests.sync.conftest import agent_config, schema_validator, wait_until

TOPICS = Topics("city", "site-a", "unit-1")


def _enqueue(conn, n, kind="summary", priority=outbox.SUMMARY):
    conn.execute("BEGIN")
    seqs = [
        outbox.enqueue(
            conn,
            TOPICS.kind(kind),
            kind,
            {"device": "unit-1", "site": "site-a", "ts": iso_utc(0), "i": i},
            priority=priority,
        )
        for i in range(n)
    ]
    conn.execute("COMMIT")
    return seqs


def test_seq_increases_by_one_survives_restart_and_rollback(db_path):
    db = Database(db_path)
    assert _enqueue(db.conn, 3) == [1, 2, 3]
    db.conn.execute("BEGIN")
    outbox.enqueue(db.conn, "t", "summary", {}, priority=1)
    db.conn.execute("ROLLBACK")  # a crash before commit: neither the row nor its seq is used
    db.close()
    db = Database(db_path)
    assert _enqueue(db.conn, 2) == [4, 5]
    db.conn.execute("BEGIN")
    outbox.prune_delivered(db.conn, 100)  # nothing delivered: nothing removed
    outbox.mark(db.conn, [4, 5], "delivered")
    assert outbox.prune_delivered(db.conn, 100) == 2
    db.conn.execute("COMMIT")
    assert _enqueue(db.conn, 1) == [6]  # pruning the newest rows does not reuse their seqs
    payload = json.loads(db.conn.execute("SELECT payload FROM outbox_payload WHERE seq = 6").fetchone()[0])
    assert (
        payload["seq"] == 6
        and payload["schema"] == "edge-agent/summary/2"
        and payload["schema_version"] == "2.1.0"
    )
    db.close()


def _fill_core(conn, start: float, n_det: int = 40):
    rows = [
        (
            iso_utc(start + i * 0.01),
            "cam1" if i % 2 else "cam2",
            i,
            "m",
            "car" if i % 3 else "bus",
            3,
            0.9,
            1,
            2,
            3,
            4,
        )
        for i in range(n_det)
    ]
    conn.executemany(
        "INSERT INTO detections (ts, camera, frame, model, label, class_id, score, x1, y1, x2, y2)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    for cam in ("cam1", "cam2"):
        for k, (frames, p50, p95) in enumerate([(50, 20.0, 30.0), (50, 40.0, 80.0)]):
            conn.execute(
                "INSERT INTO inference_stats (ts_start, ts_end, camera, model, accelerator, frames, fps, latency_p50_ms,"
                " latency_p95_ms, detections, dropped_frames, dropped_writes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    iso_utc(start + k * 10),
                    iso_utc(start + k * 10 + 10),
                    cam,
                    "ssd",
                    "cpu",
                    frames,
                    5.0,
                    p50,
                    p95,
                    10,
                    1,
                    2,
                ),
            )


def test_summary_sections_bookkeeping_and_schema(db_path):
    db = Database(db_path)
    t0 = 1_800_000_000.0  # aligned to 60 s
    db.conn.execute("BEGIN")
    _fill_core(db.conn, t0 + 1)
    db.conn.execute("COMMIT")
    writer = Writer(db, max_delay_s=0.01).start()
    clock = [t0 + 60.5]
    b = SummaryBuilder(
        interval_s=60,
        writer=writer,
        reader=lambda: Database.reader(db),
        topics=TOPICS,
        clock=lambda: clock[0],
    )
    b.started = t0 - 1000  # not a catch-up window
    b.next_start = t0
    assert b.run_due() == [1]
    assert b.run_due() == []  # nothing new has ended
    # the same window again (e.g. a restart before the bookkeeping was read): not doubled
    conn = db.reader()
    assert b._write_window(conn, t0, t0 + 60, catchup=False) is None and b.duplicates == 1
    writer.stop()
    rows = db.conn.execute("SELECT seq, payload FROM outbox_payload").fetchall()
    assert len(rows) == 1
    doc = json.loads(rows[0][1])
    assert doc["window"] == {"start": iso_utc(t0), "end": iso_utc(t0 + 60), "seconds": 60.0}
    counts = doc["sections"]["counts"]["cameras"]
    assert counts["cam1"]["frames"] == 100 and counts["cam1"]["labels"]["car"]["detections"] == 13
    assert sum(v["detections"] for c in counts.values() for v in c["labels"].values()) == 40
    inf = doc["sections"]["inference"]["cameras"]["cam2"]
    assert inf == {
        "frames": 100,
        "fps": 5.0,
        "latency_p50_ms": 20.0,
        "latency_p95_ms": 80.0,
        "model": "ssd",
        "accelerator": "cpu",
        "detections": 20,
        "dropped_frames": 2,
        "dropped_writes": 4,
    }
    assert isinstance(doc["clock_synced"], bool) and doc["sections"]["health"]["db_bytes"] > 0
    doc["session"] = 1  # added at publish time
    schema_validator("summary").validate(doc)
    assert db.conn.execute("SELECT seq FROM summary_windows").fetchall() == [(1,)]
    db.close()


def test_failing_section_is_reported_and_write_is_atomic(db_path):
    db = Database(db_path)
    writer = Writer(db, max_delay_s=0.01).start()
    register_summary_section("broken", lambda conn, s, e: 1 / 0)
    try:
        b = SummaryBuilder(interval_s=1, writer=writer, reader=db.reader, topics=TOPICS)
        conn = db.reader()
        seq = b._write_window(conn, 1000.0, 1001.0, catchup=True)
    finally:
        _SECTIONS.pop("broken", None)
    doc = json.loads(
        db.conn.execute("SELECT payload FROM outbox_payload WHERE seq = ?", (seq,)).fetchone()[0]
    )
    assert (
        "ZeroDivisionError" in doc["errors"]["broken"]
        and "counts" in doc["sections"]
        and doc["catchup"] is True
    )

    def crashing(conn):  # the summary and its bookkeeping commit together or not at all
        conn.execute("INSERT INTO summary_windows (start, end, seq, written) VALUES ('x', 'y', 0, 'z')")
        outbox.enqueue(conn, "t", "summary", {}, priority=1)
        raise RuntimeError("crash in the middle")

    writer.submit_fn(crashing, kind="summary", block=True)
    writer.flush(5)
    writer.stop()
    assert db.conn.execute("SELECT COUNT(*) FROM summary_windows WHERE start = 'x'").fetchone()[0] == 0
    assert db.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
    assert writer.failed["summary"] == 1
    db.close()


def test_mqtt_disabled_buffers_summaries(tmp_path, agents):
    a = agents(agent_config(tmp_path, None)).start()
    assert a.svc.link is None
    assert wait_until(lambda: a.svc.health()["backlog_by_kind"].get("summary", 0) >= 3, 10)
    h = a.svc.health()
    assert h["connected"] is False and h["backlog"] >= 3 and h["backlog_by_kind"]["summary"] >= 3


def test_disk_full_is_survived_and_recovers(db_path):
    db = Database(db_path)
    writer = Writer(db, max_delay_s=0.01).start()
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    writer.submit_fn(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"), block=True)
    writer.flush(5)
    big = {"blob": "x" * 20000}
    ok = outbox.submit(
        writer, lambda c: outbox.enqueue(c, "t", "event", big, priority=0), kind="event", block=True
    )
    assert ok
    assert not writer.flush(1.5)  # SQLITE_FULL: kept and retried, not lost
    assert writer.disk_full and "full" in (writer.last_error or "")
    conn = db.reader()
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    db.conn.execute(
        "PRAGMA max_page_count = 1000000"
    )  # space returns (the writer is sleeping in its backoff)
    assert writer.flush(10)
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1 and not writer.disk_full
    assert not writer.failed  # nothing accepted was lost
    writer.stop()
    db.close()


def test_retention_prunes_in_order_and_records_the_gap(db_path):
    db = Database(db_path)
    c = db.conn
    c.execute("BEGIN")
    t0 = 1_800_000_000.0
    rnd = random.Random(1)
    c.executemany(
        "INSERT INTO detections (ts, camera, frame, model, label, class_id, score, x1, y1, x2, y2) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (iso_utc(t0 + i * 0.01), "cam1", i, "model-" + "m" * 40, "car", 3, rnd.random(), 1, 2, 3, 4)
            for i in range(20000)
        ],
    )
    c.execute(
        "INSERT INTO summary_windows (start, end, seq, written) VALUES (?, ?, 0, 'x')",
        (iso_utc(t0), iso_utc(t0 + 150)),
    )
    c.execute("COMMIT")
    pad = {"pad": "p" * 800}
    c.execute("BEGIN")
    for _i in range(1500):
        outbox.enqueue(c, TOPICS.kind("summary"), "summary", pad, priority=1)
    outbox.mark(c, range(1, 701), "delivered")
    c.execute("COMMIT")
    writer = Writer(db, max_delay_s=0.01).start()
    used0 = Retention(1000, writer, db.reader, TOPICS).used()
    r = Retention(used0 / 2**20 * 0.4, writer, db.reader, TOPICS, chunk=100)  # prunes to 75 % of it
    report = r.run()
    writer.stop()
    removed = report["removed"]
    assert list(removed) == ["detections", "delivered messages", "undelivered summaries"], removed
    # detections newer than the last summarised window are kept
    assert c.execute("SELECT COUNT(*) FROM detections").fetchone()[0] == 5000
    assert c.execute("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'").fetchone()[0] == 0
    left = [s for (s,) in c.execute("SELECT seq FROM outbox WHERE kind = 'summary' ORDER BY seq")]
    assert left and left[-1] == 1500 and left == list(range(left[0], 1501))  # the oldest went first
    gaps = c.execute("SELECT from_seq, to_seq, count, reason FROM outbox_gaps").fetchall()
    assert outbox.contiguous(sorted(s for a, b, _, _ in gaps for s in range(a, b + 1))) == [
        (701, left[0] - 1)
    ]
    assert sum(g[2] for g in gaps) == left[0] - 701 and all("storage budget" in g[3] for g in gaps)
    events = [
        json.loads(p)
        for (p,) in c.execute(
            "SELECT payload FROM outbox JOIN outbox_payload USING (seq) WHERE kind = 'event' ORDER BY seq"
        )
    ]
    assert [(e["data"]["from_seq"], e["data"]["to_seq"]) for e in events] == [(g[0], g[1]) for g in gaps]
    for ev in events:
        assert ev["type"] == "gap"
        schema_validator("event").validate({**ev, "session": 0})
    st = outbox.stats(c)
    assert st["pruned"]["detections"] == 15000 and st["pruned"]["delivered"] == 700
    assert st["pruned"]["undelivered"] == left[0] - 701
    assert report["used_after"] <= r.budget
    last = outbox.state_value(c, "last_seq")  # 1500 summaries + the gap event(s)
    assert outbox.missing_in_range(c, 1, last + 2) == [
        {"from_seq": 1, "to_seq": 700, "reason": "deleted after delivery (retention)"},
        {"from_seq": 701, "to_seq": left[0] - 1, "reason": "pruned before delivery: " + gaps[0][3]},
        {"from_seq": last + 1, "to_seq": last + 2, "reason": "not assigned yet"},
    ]
    db.close()


def test_integrity_check_rejects_a_corrupt_file(tmp_path):
    from agent.errors import StoreError

    p = tmp_path / "bad.sqlite"
    p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreError) as ei:
        Database(p)
    assert "move it aside" in str(ei.value)


def test_sqlite_full_error_text_matches_writer_expectation():
    # the writer treats messages containing "full" as transient; SQLite's SQLITE_FULL message must match
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 5000,)] * 10)


def test_schema_v1_outbox_is_migrated_without_losing_a_message(tmp_path):
    """A database written by the first schema (message text inside the outbox row) opens under v2:
    every row keeps its seq, state and text; deleting a row deletes its text."""
    path = tmp_path / "v1.sqlite"
    from agent.store.db import registered_components

    v1 = next(m for m in registered_components()["sync"] if m.version == 1)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute(
        "CREATE TABLE _migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT '', PRIMARY KEY (component, version))"
    )
    raw.executescript(v1.apply)
    raw.execute("INSERT INTO _migrations (component, version, name) VALUES ('sync', 1, ?)", (v1.name,))
    for seq, state in ((1, "delivered"), (2, "pending"), (3, "pending")):
        raw.execute(
            "INSERT INTO outbox (seq, topic, kind, payload, priority, created, state) VALUES (?, 't', 'summary', ?, 1, '', ?)",
            (seq, json.dumps({"schema": "summary/1", "seq": seq}), state),
        )
    raw.execute("UPDATE sync_state SET value = 3 WHERE key = 'last_seq'")
    raw.close()
    db = Database(path)
    conn = db.conn
    assert [c[1] for c in conn.execute("PRAGMA table_info(outbox)") if c[1] == "payload"] == []
    assert conn.execute("SELECT seq, state FROM outbox ORDER BY seq").fetchall() == [
        (1, "delivered"),
        (2, "pending"),
        (3, "pending"),
    ]
    assert [
        json.loads(p)["seq"] for (p,) in conn.execute("SELECT payload FROM outbox_payload ORDER BY seq")
    ] == [1, 2, 3]
    assert outbox.stats(conn)["pending"] == 2 and _enqueue(conn, 1) == [4]
    conn.execute("BEGIN")
    assert outbox.prune_delivered(conn, 10) == 1
    conn.execute("COMMIT")
    assert [s for (s,) in conn.execute("SELECT seq FROM outbox_payload ORDER BY seq")] == [2, 3, 4]
    db.close()


def test_packed_read_matches_row_by_row_and_falls_back(db_path):
    """The publisher's one-step batch read gives exactly the rows of the plain query, in seq order, for
    each class; a message whose text is missing or holds a separator is read row by row instead."""
    db = Database(db_path)
    _enqueue(db.conn, 30)
    _enqueue(db.conn, 5, kind="health", priority=outbox.LIVE)
    conn = db.reader()
    conn.text_factory = bytes
    for prio in (None, outbox.LIVE, outbox.SUMMARY):
        for after in (0, 7, 33):
            packed = outbox.fetch_pending(conn, after, 10, prio)
            assert packed == [tuple(r) for r in outbox.fetch_pending_rows(conn, after, 10, prio)]
            assert [r[0] for r in packed] == sorted(r[0] for r in packed)
    assert outbox.fetch_pending(conn, 10_000, 10) == []
    seen = []
    real = outbox.fetch_pending_rows
    outbox_read.fetch_pending_rows = lambda *a: seen.append(a) or real(*a)  # where fetch_pending calls it
    try:
        db.conn.execute(
            "UPDATE outbox_payload SET payload = '{\"a\":\"x' || char(30) || 'y\"}' WHERE seq = 3"
        )
        rows = outbox.fetch_pending(conn, 0, 5, outbox.SUMMARY)
        assert len(seen) == 1 and rows[2][2] == b'{"a":"x\x1ey"}' and [r[0] for r in rows] == [1, 2, 3, 4, 5]
        db.conn.execute("DELETE FROM outbox_payload WHERE seq = 4")
        rows = outbox.fetch_pending(conn, 0, 5, outbox.SUMMARY)
        assert (
            len(seen) == 2 and rows[3][2] is None
        )  # shown, so the publisher can say so (it marks it rejected)
    finally:
        outbox_read.fetch_pending_rows = real
    conn.close()
    db.close()
