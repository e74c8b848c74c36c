"""The SQLite store: WAL, migrations, integrity check, the batched single writer."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from agent.errors import StoreError
from agent.store.db import Database, Migration, register_migrations
from agent.store.writer import Writer


def test_wal_and_migrations_applied_once(db_path):
    db = Database(db_path)
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"detections", "inference_stats", "_migrations"} <= tables
    db.close()
    db2 = Database(db_path)
    assert db2.migrate() == []  # nothing pending the second time
    db2.close()


def test_new_component_migration_is_applied_in_order(db_path):
    register_migrations(
        "test_component",
        [
            Migration(2, "add column", "ALTER TABLE t_demo ADD COLUMN b TEXT"),
            Migration(1, "create", "CREATE TABLE t_demo (a INTEGER)"),
        ],
    )
    db = Database(db_path)
    cols = [r[1] for r in db.conn.execute("PRAGMA table_info(t_demo)")]
    assert cols == ["a", "b"]
    versions = [
        r[0]
        for r in db.conn.execute(
            "SELECT version FROM _migrations WHERE component='test_component' ORDER BY version"
        )
    ]
    assert versions == [1, 2]
    db.close()


def test_corrupt_database_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as ei:
        Database(p)
    assert "not a valid SQLite file" in str(ei.value) and "move it aside" in str(ei.value)


def test_writer_commits_everything_on_stop(db_path):
    db = Database(db_path)
    w = Writer(db, max_queue=10000, max_batch=100).start()
    n = 0
    for i in range(50):
        rows = [
            {
                "ts": "2026-01-01T00:00:00.000Z",
                "camera": "c",
                "frame": i,
                "model": "m",
                "label": "car",
                "class_id": 2,
                "score": 0.9,
                "x1": 0,
                "y1": 0,
                "x2": 1,
                "y2": 1,
            }
            for _ in range(7)
        ]
        assert w.submit_rows("detections", rows)
        n += len(rows)
    w.stop()
    assert w.batches < 50  # batched, not one transaction per write
    reader = sqlite3.connect(db_path)
    assert reader.execute("SELECT count(*) FROM detections").fetchone()[0] == n
    db.close()


def test_writer_drops_are_counted_never_silent(db_path):
    db = Database(db_path)
    w = Writer(db, max_queue=5)  # not started: nothing drains the queue
    accepted = sum(
        w.submit_rows(
            "detections",
            [
                {
                    "ts": "x",
                    "camera": "c",
                    "frame": 0,
                    "model": "m",
                    "label": "a",
                    "class_id": 0,
                    "score": 1,
                    "x1": 0,
                    "y1": 0,
                    "x2": 0,
                    "y2": 0,
                }
            ],
        )
        for _ in range(8)
    )
    assert accepted == 5
    assert w.drops["detections"] == 3
    w.start()
    w.stop()
    assert db.conn.execute("SELECT count(*) FROM detections").fetchone()[0] == 5
    db.close()


def test_failing_write_does_not_lose_the_others(db_path):
    db = Database(db_path)
    w = Writer(db).start()

    def bad(conn):
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    w.submit_rows(
        "inference_stats",
        [
            {
                "ts_start": "a",
                "ts_end": "b",
                "camera": "c",
                "model": "m",
                "accelerator": "cpu",
                "frames": 1,
                "fps": 1.0,
                "detections": 0,
            }
        ],
    )
    w.submit_fn(bad, kind="bad")
    w.submit_fn(
        lambda conn: conn.execute(
            "INSERT INTO inference_stats (ts_start, ts_end, camera, model, accelerator, frames, fps, detections)"
            " VALUES ('a','b','c2','m','cpu',2,1.0,0)"
        ),
        kind="good",
    )
    assert w.flush(10)
    w.stop()
    assert db.conn.execute("SELECT count(*) FROM inference_stats").fetchone()[0] == 2
    assert w.failed["bad"] == 1 and "no_such_table" in (w.last_error or "")
    db.close()


def test_readers_run_beside_the_writer(db_path):
    db = Database(db_path)
    w = Writer(db, max_delay_s=0.01).start()
    stop = threading.Event()
    seen: list[int] = []

    def read_loop():
        r = db.reader()
        while not stop.is_set():
            seen.append(r.execute("SELECT count(*) FROM detections").fetchone()[0])
        r.close()

    t = threading.Thread(target=read_loop)
    t.start()
    for i in range(200):
        w.submit_rows(
            "detections",
            [
                {
                    "ts": "x",
                    "camera": "c",
                    "frame": i,
                    "model": "m",
                    "label": "a",
                    "class_id": 0,
                    "score": 1,
                    "x1": 0,
                    "y1": 0,
                    "x2": 0,
                    "y2": 0,
                }
            ],
        )
    w.flush(10)
    stop.set()
    t.join()
    w.stop()
    assert seen and max(seen) <= 200 and w.failed == {}
    db.close()
