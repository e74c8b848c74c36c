"""Retention over budget: raw detections, then sensor readings, then track events, then delivered messages."""

from __future__ import annotations

from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.retention import Retention
from agent.sync.topics import Topics
from agent.timefmt import iso_utc


def test_raw_tables_are_pruned_in_order_and_only_when_summarised(db_path):
    db = Database(db_path)
    c = db.conn
    t0 = 1_800_000_000.0
    c.execute("BEGIN")
    c.executemany(
        "INSERT INTO detections (ts, camera, frame, model, label, class_id, score, x1, y1, x2, y2)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(iso_utc(t0 + i * 0.01), "cam", i, "m" * 40, "car", 3, 0.5, 1, 2, 3, 4) for i in range(8000)],
    )
    c.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)",
        [(iso_utc(t0 + i * 0.01), "pm", "pm2_5" + "x" * 30, 12.0, "ug/m3", 0) for i in range(8000)],
    )
    c.executemany(
        "INSERT INTO crossings (ts, camera, line, direction, class, track_id, x, y) VALUES (?,?,?,?,?,?,?,?)",
        [(iso_utc(t0 + i * 0.01), "cam", "main" + "y" * 30, "in", "car", i, 1.0, 2.0) for i in range(8000)],
    )
    # a summary covers the first 60 s (6000 rows of each table)
    c.execute(
        "INSERT INTO summary_windows (start, end, seq, written) VALUES (?, ?, 0, 'x')",
        (iso_utc(t0), iso_utc(t0 + 60)),
    )
    c.execute("COMMIT")
    topics = Topics("city", "site", "unit")
    writer = Writer(db, max_delay_s=0.01).start()
    used0 = Retention(1000, writer, db.reader, topics).used()
    report = Retention(used0 / 2**20 * 0.5, writer, db.reader, topics, chunk=500).run()
    writer.stop()
    # the steps run in order, each only as far as needed to get under the budget
    assert list(report["removed"]) == ["detections", "sensor readings", "track events"], report
    assert report["removed"]["detections"] == 6000 and report["removed"]["sensor readings"] == 6000
    assert 0 < report["removed"]["track events"] <= 6000
    assert report["used_after"] <= report["budget"]
    # rows newer than the last summary window are never pruned
    assert c.execute("SELECT COUNT(*), MIN(ts) FROM detections").fetchone() == (2000, iso_utc(t0 + 60))
    assert c.execute("SELECT COUNT(*), MIN(ts) FROM readings").fetchone() == (2000, iso_utc(t0 + 60))
    pruned = outbox.stats(c)["pruned"]
    assert pruned["detections"] == 6000 and pruned["readings"] == 6000
    assert pruned["track_events"] == report["removed"]["track events"]
    db.close()
