"""Benchmark: drain a backlog of summaries from the outbox vs. a bare paho QoS 1 loop.

    .venv/bin/python benchmarks/sync_bench.py [--messages 20000] [--inflight 20] [--runs 3]
    .venv/bin/python benchmarks/sync_bench.py --backlogs 1000,20000,200000 [--runs 3]

Starts a local mosquitto (its own config, random port, password auth), fills a fresh outbox with
N summaries of realistic size, starts the real SyncService and times the drain, then publishes the
same payloads with a bare paho QoS 1 loop and prints both rates, their ratio (target >= 0.85, goal 0.9) and the
drain time. Like with like: the same broker, payloads and paho in-flight window (the agent gives
paho ``max_inflight + 2``: room for its birth / offline status, so the bare loop gets the same), and
both timed from their first publish: the agent's to its last row marked delivered (its promise),
the bare loop's to its last PUBACK. With ``--runs N`` it does N rounds (a fresh copy of
the same outbox each, the two sides taking turns to go first) and prints the medians: other work on the machine moves single figures by 20 % and more.
Besides wall time it prints the process CPU time per message of each side over the same interval
(all threads of this process; the broker is another process): when other work takes the machine's
cores away, CPU per message moves much less than the rates do.

``--backlogs 1000,20000,200000`` (issue #15 item 5) drains backlogs of each size instead (agent
only, ``--runs`` rounds each) and prints the cost per message (wall and CPU microseconds) per size:
it must not grow with the backlog.
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


def bench_agent(tmp: Path, broker: Mosquitto, db_path: Path, n: int, inflight: int) -> tuple[float, float]:
    """Drain ``n`` rows from ``db_path``: (wall seconds, process CPU seconds), first publish to last mark."""
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
        first.append((time.perf_counter(), time.process_time()))
        del link.publish_many
        return link.publish_many(*a, **kw)

    link.publish_many = first_publish  # type: ignore[method-assign]
    gc.collect()
    svc.start()
    if not link.connected.wait(10):
        raise SystemExit(f"agent did not connect: {link.last_error}")
    ok = svc.publisher.drain(time.monotonic() + 900)
    dt, dcpu = time.perf_counter() - first[0][0], time.process_time() - first[0][1]
    h = svc.health()
    svc.stop(5)
    writer.stop()
    database.close()
    if not ok or h["backlog"]:
        raise SystemExit(f"drain incomplete: {h}")
    return dt, dcpu


def bench_bare(broker: Mosquitto, msgs: list[tuple[str, bytes]], inflight: int) -> tuple[float, float]:
    """Publish ``msgs`` with a bare paho QoS 1 loop: (wall seconds, process CPU seconds) to the last PUBACK."""
    done = threading.Event()
    acked = [0]
    last = [0.0, 0.0]

    def on_publish(client, userdata, mid, reason, props):
        acked[0] += 1
        if acked[0] == len(msgs):
            last[:] = (
                time.perf_counter(),
                time.process_time(),
            )  # the last PUBACK (not when the main thread runs)
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
    t0, cpu0 = time.perf_counter(), time.process_time()
    for topic, payload in msgs:
        c.publish(topic, payload, qos=1)
    if not done.wait(600):
        raise SystemExit(f"bare loop incomplete: {acked[0]} of {len(msgs)} acknowledged")
    dt, dcpu = last[0] - t0, last[1] - cpu0
    c.disconnect()
    c.loop_stop()
    return dt, dcpu


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f}–{max(xs):.2f}"


def backlogs(ns: argparse.Namespace) -> None:
    """Per-message cost of the agent's drain for each backlog size (issue #15 item 5)."""
    sizes = [int(x) for x in ns.backlogs.split(",") if x.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "broker", users=USERS).start()
        try:
            for n in sizes:
                base = tmp / f"filled-{n}.sqlite"
                t = time.perf_counter()
                fill(base, n)
                print(f"outbox filled with {n} summaries in {time.perf_counter() - t:.1f} s", flush=True)
                walls, cpus = [], []
                for i in range(ns.runs):
                    db_path = tmp / f"bench-{n}-{i}.sqlite"
                    shutil.copy(base, db_path)
                    dt, dcpu = bench_agent(tmp, broker, db_path, n, ns.inflight)
                    db_path.unlink()
                    walls.append(dt / n * 1e6)
                    cpus.append(dcpu / n * 1e6)
                    print(
                        f"  {n:>7} run {i + 1}: {n / dt:6.0f} msg/s, {walls[-1]:6.1f} us/msg wall, {cpus[-1]:6.1f} us/msg CPU",
                        flush=True,
                    )
                base.unlink()
                rows.append((n, walls, cpus))
        finally:
            broker.close()
    print(f"in-flight window: {ns.inflight}; medians of {ns.runs} (spread)")
    print(f"{'backlog':>8}  {'msg/s':>7}  {'us/msg wall':>20}  {'us/msg CPU':>20}")
    for n, walls, cpus in rows:
        w, c = statistics.median(walls), statistics.median(cpus)
        print(f"{n:>8}  {1e6 / w:7.0f}  {w:7.1f} ({spread(walls):>11})  {c:7.1f} ({spread(cpus):>11})")


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
    ap.add_argument(
        "--backlogs",
        help="comma-separated backlog sizes (e.g. 1000,20000,200000): the agent's cost per message for each",
    )
    ns = ap.parse_args()
    if ns.backlogs:
        backlogs(ns)
        return
    n = ns.messages
    agent_runs: list[float] = []
    bare_runs: list[float] = []
    agent_cpu: list[float] = []
    bare_cpu: list[float] = []
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
                    a = bench_agent(tmp, broker, db_path, n, ns.inflight)
                    b = bench_bare(broker, msgs, ns.inflight)
                else:
                    b = bench_bare(broker, msgs, ns.inflight)
                    a = bench_agent(tmp, broker, db_path, n, ns.inflight)
                agent_runs.append(a[0])
                agent_cpu.append(a[1])
                bare_runs.append(b[0])
                bare_cpu.append(b[1])
                db_path.unlink()
                if ns.runs > 1:
                    print(
                        f"  run {i + 1}: agent {n / a[0]:6.0f} msg/s ({a[0]:.2f} s, CPU {a[1]:.2f} s), "
                        f"bare {n / b[0]:6.0f} msg/s ({b[0]:.2f} s, CPU {b[1]:.2f} s), ratio {b[0] / a[0]:.2f}",
                        flush=True,
                    )
        finally:
            broker.close()
    agent_s, bare_s = statistics.median(agent_runs), statistics.median(bare_runs)
    agent_rate, bare_rate = n / agent_s, n / bare_s
    ratios = [b / a for a, b in zip(agent_runs, bare_runs)]
    ratio = statistics.median(ratios)
    cpu_ratios = [b / a for a, b in zip(agent_cpu, bare_cpu)]
    med = " (medians)" if ns.runs > 1 else ""
    print(f"in-flight window:     {ns.inflight} (paho: {ns.inflight + 2} for both)")
    print(
        f"agent outbox drain:   {agent_rate:8.0f} msg/s  (drained {n} in {agent_s:.2f} s, each marked delivered on PUBACK){med}"
    )
    print(f"bare paho QoS 1 loop: {bare_rate:8.0f} msg/s  ({bare_s:.2f} s){med}")
    print(
        f"ratio agent/bare:     {ratio:8.2f}  (target >= 0.85){med}"
        + (f", spread {spread(ratios)}" if ns.runs > 1 else "")
    )
    print(
        f"CPU per message:      agent {statistics.median(agent_cpu) / n * 1e6:.1f} us, bare {statistics.median(bare_cpu) / n * 1e6:.1f} us"
        f" (this process, all threads); bare/agent {statistics.median(cpu_ratios):.2f}{med}"
        + (f", spread {spread(cpu_ratios)}" if ns.runs > 1 else "")
    )


if __name__ == "__main__":
    main()
