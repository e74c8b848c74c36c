"""The SQLite store: WAL, migrations, integrity check, the batched single writer."""

from __future__ import annotations

import sqlite3
import threading
import time

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


def _det(frame: int, **over) -> dict:
    row = {
        "ts": "2026-01-01T00:00:00.000Z",
        "camera": "c",
        "frame": frame,
        "model": "m",
        "label": "car",
        "class_id": 2,
        "score": 0.9,
        "x1": 0,
        "y1": 0,
        "x2": 1,
        "y2": 1,
    }
    row.update(over)
    return row


def test_writer_survives_an_unexpected_exception_in_a_write(db_path, caplog):
    """A write that fails with something other than a disk error (a row SQLite refuses, a value it
    cannot bind, a bug in the writer's own code) is counted as failed with an error and a fix line;
    the other writes of its batch are committed and the thread goes on."""
    db = Database(db_path)
    w = Writer(db, max_batch=100, max_delay_s=0.2).start()
    with caplog.at_level("ERROR", logger="agent.store.writer"):
        assert w.submit_rows("detections", [_det(1)])
        assert w.submit_rows("detections", [_det(2, camera=None)], kind="bad_null")  # NOT NULL
        assert w.submit_rows("detections", [_det(3, score=object())], kind="bad_type")  # cannot bind
        assert w.submit_rows("detections", [_det(4)])
        assert w.flush(10)
        # an exception from inside the writer's own commit code, once
        real = w._commit
        calls = []

        def boom(conn, batch):
            if not calls:
                calls.append(1)
                raise RecursionError("maximum recursion depth exceeded")
            return real(conn, batch)

        w._commit = boom
        assert w.submit_rows("detections", [_det(5)], kind="unlucky")
        assert w.flush(10)
        assert w.submit_rows("detections", [_det(6)])
        assert w.flush(10)
    assert w.alive, "the writer thread died"
    assert dict(w.failed) == {"bad_null": 1, "bad_type": 1, "unlucky": 1}, w.failed
    frames = [r[0] for r in db.conn.execute("SELECT frame FROM detections ORDER BY frame")]
    assert frames == [1, 4, 6]
    lost = [r.getMessage() for r in caplog.records if "writes lost" in r.getMessage()]
    assert len(lost) == 3 and all("\n  fix: " in m for m in lost), lost
    assert any("RecursionError" in m for m in lost)
    w.stop()
    assert not w.alive
    db.close()


def test_writer_stop_gives_up_on_a_disk_that_stays_full(db_path):
    """A batch still stuck on SQLITE_FULL at stop's deadline is counted as failed and the thread ends:
    none is left retrying behind a database that is about to be closed."""
    db = Database(db_path)
    w = Writer(db, max_delay_s=0.01).start()
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    w.submit_fn(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"), block=True)
    assert w.flush(5)
    assert w.submit_rows("detections", [_det(i) for i in range(2000)])
    assert not w.flush(1.0) and w.disk_full
    t0 = time.monotonic()
    w.stop(timeout_s=1.0)
    assert time.monotonic() - t0 < 8
    assert not w.alive
    assert w.failed["detections"] >= 1 and "full" in (w.last_error or "")
    db.close()
