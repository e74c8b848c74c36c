"""The NGSI-LD sink against a local HTTP server that checks every request against the NGSI-LD API
rules that matter, validates every entity with validate.py --check-formats, and can be told to fail
or hang: no entity is lost across an outage, a hang and a restart; the outbox migration keeps every
pending MQTT message."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.ngsi_ld.sink import UPSERT_PATH, NgsiLdSink, link_header
from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync import outbox
from agent.timefmt import iso_utc
from tests.contract.ngsi import validate


class Broker:
    """A local NGSI-LD endpoint: mode ok (204), fail (503) or hang (no answer until released)."""

    def __init__(self, tmp: Path, *, tenant: str, token: str, batch_size: int) -> None:
        self.tmp, self.tenant, self.token, self.batch_size = tmp, tenant, token, batch_size
        self.mode = "ok"
        self.received: dict[str, dict] = {}
        self.requests = 0
        self.hung = 0
        self.violations: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                outer.handle(self)

            def do_GET(self):  # noqa: N802
                outer.violations.append(f"GET {self.path}")
                self.send_response(405)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
            mode = self.mode
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        if mode == "hang":
            with self.lock:
                self.hung += 1
            self.release.wait(30)
            return  # the client timed out long ago; close without an answer
        if mode == "fail":
            h.send_response(503)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(b'{"type": "https://uri.etsi.org/ngsi-ld/errors/InternalError"}')
            return
        problems = self.check(h, body)
        if problems:
            self.violations += problems
            h.send_response(400)
            h.end_headers()
            return
        for e in json.loads(body):
            self.received[e["id"]] = e
        h.send_response(204)
        h.end_headers()

    def check(self, h: BaseHTTPRequestHandler, body: bytes) -> list[str]:
        p = []
        if h.path != UPSERT_PATH:
            p.append(f"path {h.path}")
        if h.headers.get("Content-Type") != "application/json":
            p.append(f"content type {h.headers.get('Content-Type')}")
        if h.headers.get("NGSILD-Tenant") != self.tenant:
            p.append(f"tenant {h.headers.get('NGSILD-Tenant')}")
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            p.append("no bearer token")
        try:
            batch = json.loads(body)
        except ValueError:
            return p + ["body is not JSON"]
        if not isinstance(batch, list) or not 1 <= len(batch) <= self.batch_size:
            return p + [
                f"batch shape: {type(batch).__name__} of {len(batch) if isinstance(batch, list) else '-'}"
            ]
        types = {e.get("type") for e in batch}
        if len(types) != 1 or any("id" not in e or "@context" in e for e in batch):
            p.append(f"mixed types or bad entities: {types}")
        elif h.headers.get("Link") != link_header(types.pop()):
            p.append(f"Link {h.headers.get('Link')}")
        if len({e.get("id") for e in batch}) != len(batch):
            p.append("duplicate ids in a batch")
        r = validate(batch, self.tmp, "--form", "normalized")
        if r.returncode != 0:
            p.append("validate.py: " + r.stdout[-1500:])
        return p

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _fill(db: Database, now: float) -> None:
    """Three hours of 15-minute bins on two lines, and three hours of PM readings."""
    hour = now - now % 3600
    bins = []
    for k in range(12):
        start = iso_utc(hour - 3 * 3600 + k * 900)
        for line, d, cls, n in (
            ("north", "in", "car", 5 + k),
            ("north", "out", "truck", 1),
            ("south", "in", "car", 3),
        ):
            bins.append(("road", line, d, cls, start, 900, n, 900.0))
    db.conn.executemany(
        "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s) VALUES (?,?,?,?,?,?,?,?)",
        bins,
    )
    rows = []
    for h in range(1, 4):
        for m in range(60):
            t = hour - h * 3600 + m * 60 + 3
            rows += [
                (iso_utc(t), "air", "pm2_5", 8.0 + h, "ug/m3", 0),
                (iso_utc(t), "air", "pm10", 20.0, "ug/m3", 0),
            ]
    db.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
    )


def _cfg(tmp: Path, url: str, token_file: Path) -> object:
    return parse_config(
        {
            "device": {"id": "pole-3", "site": "ring", "latitude": 52.52, "longitude": 13.405},
            "storage": {"path": str(tmp / "agent.sqlite"), "commit_interval_s": 0.05},
            "cameras": [
                {
                    "name": "road",
                    "source": "x.mp4",
                    "analytics": {
                        "lines": [
                            {"name": "north", "points": [[0, 0.5], [1, 0.5]], "directions": ["in", "out"]},
                            {"name": "south", "points": [[0, 0.7], [1, 0.7]], "directions": ["in", "out"]},
                        ]
                    },
                }
            ],
            "sensors": [{"name": "air", "driver": "pms5003", "port": "/dev/null"}],
            "ngsi_ld": {
                "enabled": True,
                "url": url,
                "tenant": "city",
                "token_file": str(token_file),
                "batch_size": 7,
                "interval_s": 0.3,
                "lookback_s": 4 * 3600,
                "timeout_s": 1.0,
                "retry_initial_s": 0.1,
                "retry_max_s": 0.4,
            },
        }
    )


def _wait(pred, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _count(path: Path, state: str) -> int:
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT COUNT(*) FROM sink_queue WHERE state = ?", (state,)).fetchone()[0]
    finally:
        c.close()


def test_sink_survives_an_outage_a_hang_and_a_restart_with_no_entity_lost(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    broker = Broker(tmp_path, tenant="city", token="s3cret", batch_size=7)
    cfg = _cfg(tmp_path, broker.url, token)
    db = Database(cfg.storage.path)
    _fill(db, time.time())
    writer = Writer(db, max_delay_s=0.05).start()
    try:
        broker.mode = "fail"
        sink = NgsiLdSink(cfg, writer, db.reader).start()
        _wait(lambda: sink.failures >= 3, 20, "three failed attempts")
        total = _count(cfg.storage.path, "pending")
        # 12 bins x 3 line/direction groups x (all + 1 class) = 72 TrafficFlowObserved, 3 hours of air
        assert total == 72 + 3, total
        assert "HTTP 503" in sink.health()["last_error"]
        sink.stop()  # a restart in the middle of the outage: the queue is on disk
        broker.mode = "hang"
        sink = NgsiLdSink(cfg, writer, db.reader).start()
        _wait(lambda: broker.hung >= 2 and sink.failures >= 2, 20, "two hung requests timed out")
        assert _count(cfg.storage.path, "delivered") == 0
        broker.mode = "ok"
        _wait(lambda: _count(cfg.storage.path, "pending") == 0, 60, "the backlog to drain")
        sink.produce()  # nothing new: no duplicates queued
        assert _count(cfg.storage.path, "pending") == 0
        assert not broker.violations, broker.violations[:3]
        c = sqlite3.connect(cfg.storage.path)
        keys = {k for (k,) in c.execute("SELECT key FROM sink_queue")}
        c.close()
        assert set(broker.received) == keys and len(keys) == total
        assert _count(cfg.storage.path, "delivered") == total and _count(cfg.storage.path, "rejected") == 0
        tfo = [e for e in broker.received.values() if e["type"] == "TrafficFlowObserved"]
        assert all(e["refDevice"]["object"] == "urn:ngsi-ld:Device:ring:pole-3" for e in tfo)
        aqo = [e for e in broker.received.values() if e["type"] == "AirQualityObserved"]
        assert len(aqo) == 3 and all(e["pm25"]["unitCode"] == "GQ" for e in aqo)
        assert sink.health()["pending"] == 0 and sink.health()["last_error"] is None
        sink.stop()
    finally:
        broker.close()
        writer.stop()
        db.close()


def test_a_refused_batch_is_rejected_and_named_not_retried_forever(tmp_path):
    token = tmp_path / "token"
    token.write_text("wrong\n")
    broker = Broker(tmp_path, tenant="city", token="s3cret", batch_size=7)  # 400: bearer token mismatch
    cfg = _cfg(tmp_path, broker.url, token)
    db = Database(cfg.storage.path)
    _fill(db, time.time())
    writer = Writer(db, max_delay_s=0.05).start()
    try:
        sink = NgsiLdSink(cfg, writer, db.reader).start()
        _wait(lambda: _count(cfg.storage.path, "rejected") >= 7, 20, "a rejected batch")
        sink.stop()
        assert "HTTP 400" in sink.health()["last_error"]
    finally:
        broker.close()
        writer.stop()
        db.close()


def test_outbox_v2_database_migrates_keeping_every_pending_message(tmp_path):
    """A database of the previous outbox schema (v2), filled with pending and delivered messages,
    opens under v3 with every message, its state and its text unchanged, and gets the sink queue."""
    from agent.store.db import registered_components

    path = tmp_path / "v2.sqlite"
    migrations = {m.version: m for m in registered_components()["sync"]}
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
    n = 5000
    raw.execute("BEGIN")
    for seq in range(1, n + 1):
        state = "delivered" if seq <= 1000 else "pending"
        raw.execute(
            "INSERT INTO outbox (seq, topic, kind, priority, created, state) VALUES (?, 'city/s/d/summary', 'summary', 1, '', ?)",
            (seq, state),
        )
        raw.execute(
            "INSERT INTO outbox_payload (seq, payload) VALUES (?, ?)",
            (seq, json.dumps({"seq": seq, "x": "y" * 50})),
        )
    raw.execute("UPDATE sync_state SET value = ? WHERE key = 'last_seq'", (n,))
    raw.execute("COMMIT")
    before = raw.execute(
        "SELECT o.seq, o.state, p.payload FROM outbox o JOIN outbox_payload p USING (seq) ORDER BY o.seq"
    ).fetchall()
    raw.close()
    db = Database(path)
    conn = db.conn
    assert conn.execute("SELECT MAX(version) FROM _migrations WHERE component = 'sync'").fetchone()[0] == max(
        migrations
    )
    after = conn.execute(
        "SELECT o.seq, o.state, p.payload FROM outbox o JOIN outbox_payload p USING (seq) ORDER BY o.seq"
    ).fetchall()
    assert after == before
    assert outbox.stats(conn)["pending"] == n - 1000
    assert conn.execute("SELECT COUNT(*) FROM sink_queue").fetchone()[0] == 0
    db.close()


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level("ERROR")


def test_retention_prunes_delivered_sink_rows_only(tmp_path):
    from agent.ngsi_ld.sink import prune_delivered

    db = Database(tmp_path / "r.sqlite")
    db.conn.executemany(
        "INSERT INTO sink_queue (sink, kind, key, created, state, payload) VALUES ('ngsi-ld', 'T', ?, '', ?, '{}')",
        [(f"k{i}", "delivered" if i < 5 else "pending") for i in range(8)],
    )
    db.conn.execute("BEGIN")
    assert prune_delivered(db.conn, 100) == 5
    db.conn.execute("COMMIT")
    assert db.conn.execute("SELECT COUNT(*) FROM sink_queue WHERE state = 'pending'").fetchone()[0] == 3
    db.close()


def test_a_bin_committed_after_the_sink_passed_its_end_is_still_exported(tmp_path):
    """#14: the sink took bins by end time up to now; one the writer commits after that (a crossing
    resolved late, a batch, a lagging camera) was never exported. By change number it is, and a bin
    that changes again is exported again (same entity id: an upsert), and nothing twice otherwise."""
    from agent.analytics import store
    from agent.analytics.bins import ClosedBin

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    broker = Broker(tmp_path, tenant="city", token="s3cret", batch_size=7)
    cfg = _cfg(tmp_path, broker.url, token)
    db = Database(cfg.storage.path)
    now = time.time()
    writer = Writer(db, max_delay_s=0.05).start()
    try:
        sink = NgsiLdSink(cfg, writer, db.reader)
        assert sink.produce(now) == 0
        # committed after the produce whose clock passed the bin's end
        start = now - now % 900 - 900
        b = ClosedBin(start, 900, 900.0, {("north", "in", "car"): 4, ("north", "out", "car"): 0})
        writer.submit_fn(store.upsert_bin("road", b), block=True)
        assert writer.flush(5)
        assert sink.produce(now + 1) == 4  # (in, out) x (all classes, car)
        assert sink.produce(now + 2) == 0  # nothing changed: nothing queued again
        writer.submit_fn(
            store.upsert_bin("road", ClosedBin(start, 900, 0.0, {("north", "in", "car"): 1})), block=True
        )
        assert writer.flush(5)
        assert sink.produce(now + 3) == 4  # the whole bin again, its new count
        # a bin in progress (flushed at a shutdown) waits until it has ended
        cur = now - now % 900
        writer.submit_fn(
            store.upsert_bin("road", ClosedBin(cur, 900, 10.0, {("north", "in", "car"): 2})), block=True
        )
        assert writer.flush(5)
        assert sink.produce(now + 4) == 0
        assert sink.produce(cur + 901) == 2  # (in) x (all classes, car)
        c = sqlite3.connect(cfg.storage.path)
        rows = c.execute("SELECT key, payload FROM sink_queue ORDER BY id").fetchall()
        c.close()
        assert len(rows) == 10
        last = {k: json.loads(p) for k, p in rows}
        val = lambda e, k: e[k]["value"] if isinstance(e.get(k), dict) else e.get(k)  # noqa: E731
        counts = sorted(val(e, "intensity") for e in last.values() if val(e, "vehicleType") == "car")
        assert counts == [0, 2, 5], counts  # out 0, the bin in progress 2, the amended bin 4 + 1
    finally:
        broker.close()
        writer.stop()
        db.close()
