"""Benchmark: per-incident latency from the frame that raises it to the broker's PUBACK.

    .venv/bin/python benchmarks/incident_latency.py [--incidents 20] [--backlog 2000]

Starts a local mosquitto (its own config, random port, password auth), the real SyncService on a
fresh database and an analytics runner wired to it as the pipeline wires it. Synthetic frames make a
vehicle stand in a zone until a ``stopped_vehicle`` incident starts; the clock starts when the
runner is handed that frame. It stops (1) when a hub subscriber on the same broker receives the
``start`` event (mosquitto forwards a QoS 1 message and acknowledges it in the same pass, so this is
the PUBACK time to within the broker's loop) and (2) when the agent has recorded the PUBACK in its
outbox (the mark is batched: up to the publisher's mark delay plus a writer commit later).
Run twice: with an empty outbox, and behind a backlog of ``--backlog`` summaries queued earlier
(capped at the default backfill rate of 20/s), which the incident must jump. Figures, not a
pass/fail test.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

import agent.parts  # noqa: E402, F401 - every part's tables and sections
from agent.analytics.config import CameraAnalytics  # noqa: E402
from agent.analytics.runner import AnalyticsRunner  # noqa: E402
from agent.config import parse_config  # noqa: E402
from agent.store.db import Database  # noqa: E402
from agent.store.writer import Writer  # noqa: E402
from agent.sync import outbox  # noqa: E402
from agent.sync.service import SyncService  # noqa: E402
from agent.sync.topics import Topics  # noqa: E402
from agent.types import Detection, Frame, InferenceResult  # noqa: E402
from tests.sync.mosquitto import Mosquitto  # noqa: E402

IMG = np.zeros((400, 400, 3), np.uint8)
TARGET_MS = 250.0


def run(tmp: Path, broker: Mosquitto, n: int, backlog: int) -> dict[str, float]:
    db_path = tmp / f"unit-{backlog}.sqlite"
    cfg = parse_config(
        {
            "device": {"id": "unit-1", "site": "site-a"},
            "storage": {"path": str(db_path)},
            "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": "unit-1",
                     "password": "pw-unit-1", "health_interval_s": 3600},
            "summary": {"interval_s": 3600},
        }
    )  # fmt: skip
    Database(db_path).close()
    if backlog:
        c = sqlite3.connect(db_path)
        c.execute("BEGIN")
        topics = Topics("city", "site-a", "unit-1")
        for i in range(backlog):
            outbox.enqueue(c, topics.kind("summary"), "summary", {"window": {"i": i}, "pad": "x" * 1200},
                           priority=outbox.SUMMARY)  # fmt: skip
        c.commit()
        c.close()
    database = Database(db_path)
    writer = Writer(database, max_delay_s=cfg.storage.commit_interval_s).start()
    svc = SyncService(cfg, db_path, writer).start()
    got: dict[str, float] = {}
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{backlog}", protocol=paho.MQTTv5)
    sub.username_pw_set("hub", "pw-hub")
    ready = threading.Event()
    sub.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("city/+/+/event", qos=1), ready.set())

    def on_msg(c, u, m):
        import json

        d = json.loads(m.payload)
        if d.get("type") == "incident" and d["data"]["phase"] == "start":
            got[d["data"]["id"]] = time.monotonic()

    sub.on_message = on_msg
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    ready.wait(10)
    while not svc.health()["connected"]:
        time.sleep(0.05)
    acfg = CameraAnalytics.model_validate(
        {
            "zones": [{"name": "z", "points": [[100, 0], [300, 0], [300, 400], [100, 400]], "units": "px"}],
            "incidents": [{"kind": "stopped_vehicle", "name": "s", "zone": "z", "min_duration_s": 1.0, "clear_s": 0.2}],
            "forecast": {"enabled": False},
        }
    )  # fmt: skip
    r = AnalyticsRunner("cam", acfg, writer, frame_size=(400, 400))
    r.event_writes, r.on_event_queued = svc.event_writes, svc.notify
    starts: dict[str, float] = {}
    r_emit = r._emit_incident

    def emit(ev, res):
        if ev["phase"] == "start":
            starts[ev["id"]] = handed[0]
        r_emit(ev, res)

    r._emit_incident = emit
    handed = [0.0]
    t, i = time.time(), 0
    acked: list[float] = []
    received: list[float] = []
    for _ in range(n):
        for y in [*range(0, 200, 20), *[200] * 30, *range(200, 420, 20), *[None] * 20]:
            dets = [] if y is None else [Detection("car", 3, 0.9, (180, y - 40, 220, y))]
            handed[0] = time.monotonic()
            r.process(InferenceResult(Frame("cam", i, t, 0.0, IMG), "m", dets))
            i, t = i + 1, t + 0.1
        iid = list(starts)[-1]
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        seq = None
        while True:
            row = conn.execute(
                "SELECT o.seq, o.state FROM outbox o JOIN outbox_payload p USING (seq)"
                " WHERE o.kind = 'event' AND p.payload LIKE ?",
                (f'%"id":"{iid}","phase":"start"%',),
            ).fetchone()
            if row and row[1] == "delivered":
                seq = row[0]
                acked.append((time.monotonic() - starts[iid]) * 1000)
                break
            time.sleep(0.002)
        conn.close()
        while iid not in got:
            time.sleep(0.002)
        received.append((got[iid] - starts[iid]) * 1000)
        assert seq is not None
    pending = svc.health()["backlog_by_kind"].get("summary", 0)
    sub.loop_stop()
    sub.disconnect()
    svc.stop(3)
    writer.stop()
    database.close()
    return {
        "ack_p50": statistics.median(acked),
        "ack_p95": sorted(acked)[max(0, int(len(acked) * 0.95) - 1)],
        "recv_p50": statistics.median(received),
        "recv_p95": sorted(received)[max(0, int(len(received) * 0.95) - 1)],
        "summaries_still_queued": pending,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--incidents", type=int, default=20)
    ap.add_argument("--backlog", type=int, default=2000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(
            tmp / "broker", users={"unit-1": "pw-unit-1", "hub": "pw-hub"}, hub_users=["hub"]
        ).start()
        try:
            for backlog in (0, a.backlog):
                f = run(tmp, broker, a.incidents, backlog)
                print(
                    f"backlog {backlog:>5} summaries: frame -> hub subscriber p50 {f['recv_p50']:.1f} ms,"
                    f" p95 {f['recv_p95']:.1f} ms (target p95 <= {TARGET_MS:.0f} ms);"
                    f" frame -> PUBACK recorded in the outbox p50 {f['ack_p50']:.1f} ms, p95 {f['ack_p95']:.1f} ms;"
                    f" summaries still queued behind it: {f['summaries_still_queued']}"
                )
        finally:
            broker.close()


if __name__ == "__main__":
    main()
