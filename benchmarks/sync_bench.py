"""Benchmark: drain a backlog of summaries from the outbox vs. a bare paho QoS 1 loop.

    .venv/bin/python benchmarks/sync_bench.py [--messages 20000] [--inflight 20] [--runs 3]

Starts a local mosquitto (its own config, random port, password auth), fills a fresh outbox with
N summaries of realistic size, starts the real SyncService and times the drain, then publishes the
same payloads with a bare paho QoS 1 loop and prints both rates, their ratio (target >= 0.8) and the
drain time. Like with like: the same broker, payloads and paho in-flight window (the agent gives
paho ``max_inflight + 2``: room for its birth / offline status, so the bare loop gets the same), and
both timed from their first publish: the agent's to its last row marked delivered (its promise),
the bare loop's to its last PUBACK. With ``--runs N`` it does N rounds (a fresh copy of
the same outbox each, the two sides taking turns to go first) and prints the medians: other work on the machine moves single figures by 20 % and more.
Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

import agent.parts  # noqa: E402, F401 - every part's tables and sections
from agent.config import parse_config  # noqa: E402
from agent.store.db import Database  # noqa: E402
from agent.store.writer import Writer  # noqa: E402
from agent.sync import outbox  # noqa: E402
from agent.sync.service import SyncService  # noqa: E402
from agent.sync.topics import Topics  # noqa: E402
from agent.timefmt import iso_utc  # noqa: E402
from tests.sync.mosquitto import Mosquitto  # noqa: E402

USERS = {"unit-1": "pw-unit-1", "bare": "pw-bare"}


def summary_body(i: int, t0: float) -> dict:
    cams = {
        f"cam{c}": {
            "frames": 300,
            "labels": {
                lab: {"detections": 17 + i % 5, "objects": None}
                for lab in ("car", "bus", "truck", "person", "bicycle")
            },
        }
        for c in range(2)
    }
    inf = {
        f"cam{c}": {
            "frames": 300,
            "fps": 5.0,
            "latency_p50_ms": 21.5,
            "latency_p95_ms": 34.1,
            "model": "ssd_mobilenet_v1_coco",
            "accelerator": "cpu",
            "detections": 90,
            "dropped_frames": 0,
            "dropped_writes": 0,
        }
        for c in range(2)
    }
    return {
        "device": "unit-1",
        "site": "site-a",
        "ts": iso_utc(t0 + 60 * i),
        "window": {"start": iso_utc(t0 + 60 * i), "end": iso_utc(t0 + 60 * (i + 1)), "seconds": 60.0},
        "clock_synced": True,
        "catchup": False,
        "agent_version": "0.1.0",
        "sections": {
            "counts": {"cameras": cams},
            "inference": {"cameras": inf},
            "health": {
                "cpu_temp_c": 51.2,
                "load_1m": 0.8,
                "mem_available_mb": 512.0,
                "disk_free_mb": 9000.0,
                "db_bytes": 1 << 24,
                "outbox_backlog": 100,
                "uptime_s": 3600.0,
            },
        },
    }


def fill(db_path: Path, n: int) -> list[tuple[str, bytes]]:
    database = Database(db_path)
    topics = Topics("city", "site-a", "unit-1")
    t0 = time.time() - 60 * n
    conn = database.conn
    conn.execute("BEGIN")
    for i in range(n):
        outbox.enqueue(conn, topics.kind("summary"), "summary", summary_body(i, t0), priority=outbox.SUMMARY)
    conn.execute("COMMIT")
    msgs = [
        (r[0], (r[1][:-1] + ',"session":1}').encode())
        for r in conn.execute(
            "SELECT topic, payload FROM outbox JOIN outbox_payload USING (seq) ORDER BY seq"
        )
    ]
    database.close()
    return msgs


def bench_agent(tmp: Path, broker: Mosquitto, db_path: Path, n: int, inflight: int) -> float:
    (tmp / "pw").write_text(USERS["unit-1"])
    cfg = parse_config(
        {
            "device": {"id": "unit-1", "site": "site-a"},
            "storage": {"path": str(db_path)},
            "mqtt": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": broker.port,
                "username": "unit-1",
                "password_file": str(tmp / "pw"),
                "max_inflight": inflight,
                "backfill_rate_per_s": 0,
                "health_interval_s": 3600,
            },
            "summary": {"interval_s": 3600},
        }
    )
    database = Database(db_path)
    writer = Writer(database, max_delay_s=cfg.storage.commit_interval_s).start()
    svc = SyncService(cfg, db_path, writer)
    assert svc.link is not None and svc.publisher is not None
    link = svc.link
    first = []

    def first_publish(
        *a, **kw
    ):  # times the first hand-over to paho, then gets out of the way (instance attribute)
        first.append(time.perf_counter())
        del link.publish_many
        return link.publish_many(*a, **kw)

    link.publish_many = first_publish  # type: ignore[method-assign]
    gc.collect()
    svc.start()
    if not link.connected.wait(10):
        raise SystemExit(f"agent did not connect: {link.last_error}")
    ok = svc.publisher.drain(time.monotonic() + 600)
    dt = time.perf_counter() - first[0]
    h = svc.health()
    svc.stop(5)
    writer.stop()
    database.close()
    if not ok or h["backlog"]:
        raise SystemExit(f"drain incomplete: {h}")
    return dt


def bench_bare(broker: Mosquitto, msgs: list[tuple[str, bytes]], inflight: int) -> float:
    done = threading.Event()
    acked = [0]
    last = [0.0]

    def on_publish(client, userdata, mid, reason, props):
        acked[0] += 1
        if acked[0] == len(msgs):
            last[0] = time.perf_counter()  # the last PUBACK (not when the main thread gets to run again)
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="unit-1", protocol=paho.MQTTv5)
    c.username_pw_set("unit-1", USERS["unit-1"])
    c.max_inflight_messages_set(inflight + 2)  # as MqttLink does for the agent
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    connected.wait(10)
    gc.collect()
    t0 = time.perf_counter()
    for topic, payload in msgs:
        c.publish(topic, payload, qos=1)
    if not done.wait(600):
        raise SystemExit(f"bare loop incomplete: {acked[0]} of {len(msgs)} acknowledged")
    dt = last[0] - t0
    c.disconnect()
    c.loop_stop()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument(
        "--inflight",
        type=int,
        default=20,
        help="in-flight window for both (mqtt.max_inflight; default as the config)",
    )
    ap.add_argument(
        "--runs", type=int, default=1, help="rounds of agent + bare (fresh outbox each); medians are printed"
    )
    ns = ap.parse_args()
    n = ns.messages
    agent_runs: list[float] = []
    bare_runs: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "broker", users=USERS).start()
        try:
            base = tmp / "filled.sqlite"
            t = time.perf_counter()
            msgs = fill(base, n)
            size = sum(len(p) for _, p in msgs) / len(msgs)
            print(
                f"outbox filled with {n} summaries ({size:.0f} bytes each) in {time.perf_counter() - t:.1f} s"
            )
            for i in range(ns.runs):
                db_path = tmp / f"bench-{i}.sqlite"
                shutil.copy(base, db_path)  # a fresh copy of the same backlog for every round
                # alternate which side goes first, so a machine speeding up or slowing down during a
                # round does not favour one side
                if i % 2 == 0:
                    agent_runs.append(bench_agent(tmp, broker, db_path, n, ns.inflight))
                    bare_runs.append(bench_bare(broker, msgs, ns.inflight))
                else:
                    bare_runs.append(bench_bare(broker, msgs, ns.inflight))
                    agent_runs.append(bench_agent(tmp, broker, db_path, n, ns.inflight))
                db_path.unlink()
                if ns.runs > 1:
                    print(
                        f"  run {i + 1}: agent {n / agent_runs[-1]:6.0f} msg/s ({agent_runs[-1]:.2f} s), "
                        f"bare {n / bare_runs[-1]:6.0f} msg/s ({bare_runs[-1]:.2f} s), ratio {bare_runs[-1] / agent_runs[-1]:.2f}"
                    )
        finally:
            broker.close()
    agent_s, bare_s = statistics.median(agent_runs), statistics.median(bare_runs)
    agent_rate, bare_rate = n / agent_s, n / bare_s
    ratio = statistics.median(b / a for a, b in zip(agent_runs, bare_runs))
    med = " (medians)" if ns.runs > 1 else ""
    print(f"in-flight window:     {ns.inflight} (paho: {ns.inflight + 2} for both)")
    print(
        f"agent outbox drain:   {agent_rate:8.0f} msg/s  (drained {n} in {agent_s:.2f} s, each marked delivered on PUBACK){med}"
    )
    print(f"bare paho QoS 1 loop: {bare_rate:8.0f} msg/s  ({bare_s:.2f} s){med}")
    print(f"ratio agent/bare:     {ratio:8.2f}  (target >= 0.8){med}")


if __name__ == "__main__":
    main()
