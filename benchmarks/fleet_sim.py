"""Fleet simulation: N units with the real agent sync code -> mosquitto -> 2-4 hub workers -> PostgreSQL.

    .venv/bin/python benchmarks/fleet_sim.py [--units 500] [--duration 300] [--interval 5] [--workers 3]
                                             [--hosts 8] [--json OUT]

Every simulated unit is the agent's own SyncService with its own SQLite outbox, seq and session
(``Database`` + ``Writer`` + ``SyncService``, as ``edge-agent run`` wires them), publishing
accelerated summaries (one per ``--interval`` seconds instead of 60, windows aligned to the UTC
clock like a real fleet) and health messages to a local mosquitto. Units run ``--hosts`` processes,
so one SIGKILL takes down a group of units the way a power cut takes down a unit. The hub is
``--workers`` real ``edge-agent hub`` processes on one MQTT 5 shared subscription and one
PostgreSQL that this script starts (its own data directory and port; tests/hub/postgres.py).

During the run, at fixed fractions of ``--duration``: the broker is stopped for a while
(persistence off: what it held is gone); a hub worker is SIGKILLed (and restarted later); one host
of units is SIGKILLed and restarted. After the load, it waits until every unit's seqs up to what
the unit had written are held with no open gap, stops the units cleanly, and prints:

- messages per second ingested (whole run, and the best 5 s after the outage: the drain rate);
- end-to-end latency (unit's ``ts`` -> hub commit) p50/p99, all messages and undisturbed ones;
- CPU seconds per 1,000 messages for each component (units, broker, hub workers, PostgreSQL);
- payload and stored bytes per message; convergence time;
- per device, after convergence: gaps and duplicates stored (both must be 0), and how many
  duplicates were delivered and dropped.

Figures, not a pass/fail test (tests/hub/test_fleet_sim.py runs a small size and checks the
promises). ``--json OUT`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")


# -- a host of simulated units (child process) --------------------------------------------------------


def _synthetic_sections() -> None:
    """Counts and AQI like a real unit's (the analytics and sensors parts are not running here)."""
    import agent.parts  # noqa: F401 - every part's tables and sections
    from agent.sections import register_summary_section, summary_sections

    summary_sections()  # the real sections first, then replace the two this host cannot compute

    def analytics(conn, start, end):
        r = random.Random(hash((start, id(conn))))
        vol = {
            d: {c: r.randint(0, 30) for c in ("car", "truck", "bus", "motorcycle")}
            for d in ("northbound", "southbound")
        }
        return {"cameras": {"cam0": {"volumes": {"main": vol}, "bins": [], "zones": {}, "speeds": {}}}}

    def sensors(conn, start, end):
        r = random.Random(hash((end, id(conn))))
        pm = round(r.uniform(3, 40), 1)
        from firmware_bridge import aqi

        a = aqi.aqi(pm, None)
        a.update(basis="window_mean", pm2_5=pm, pm10=None)
        return {"sensors": {}, "aqi": {"pm": a}}

    register_summary_section("analytics", analytics)
    register_summary_section("sensors", sensors)


def host_main(ns: argparse.Namespace) -> int:
    import logging

    from agent.config import parse_config
    from agent.store.db import Database
    from agent.store.writer import Writer
    from agent.sync.service import SyncService

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _synthetic_sections()
    units = []
    for i in range(ns.first, ns.first + ns.count):
        dev = f"u{i:05d}"
        cfg = parse_config(
            {
                "device": {"id": dev, "site": f"site-{i % 10}"},
                "storage": {"path": str(Path(ns.dir) / f"{dev}.sqlite"), "integrity_check": "off"},
                "mqtt": {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "port": ns.port,
                    "reconnect_initial_s": 0.5,
                    "reconnect_max_s": 5.0,
                    "keepalive_s": 10,
                    "health_interval_s": ns.interval * 6,
                    "backfill_rate_per_s": 20,
                },
                "summary": {"interval_s": ns.interval, "catchup_windows": 60},
                "logging": {"level": "warning"},
            }
        )
        db = Database(cfg.storage.path, check="off")
        w = Writer(db, max_delay_s=cfg.storage.commit_interval_s).start()
        units.append((db, w, SyncService(cfg, cfg.storage.path, w, retention_interval_s=300)))
    for _, _, s in units:
        s.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()

    def close(u) -> None:
        db, w, s = u
        s.stop(8.0)
        w.stop()
        db.close()

    ts = [threading.Thread(target=close, args=(u,)) for u in units]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return 0


# -- the orchestrator ---------------------------------------------------------------------------------


class Broker:
    """mosquitto with its own config: anonymous on loopback (a benchmark), persistence off."""

    def __init__(self, d: Path) -> None:
        from tests.sync.mosquitto import find_mosquitto, free_port

        self.exe = find_mosquitto()
        self.port = free_port()
        self.conf = d / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_inflight_messages 1000\nmax_queued_messages 100000\nlog_dest none\n"
            + (f"user {pwd.getpwuid(os.getuid()).pw_name}\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import socket

        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def cpu_s(pid: int) -> float | None:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def children_of(ppid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


class CpuMeter:
    """Samples the CPU time of each component's processes once a second; keeps a killed process's last value."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[int, float]] = {}
        self.sources: dict[str, callable] = {}
        self.base: dict[str, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pids) -> None:
        self.sources[name] = pids
        self.groups.setdefault(name, {})

    def sample(self) -> None:
        for name, src in self.sources.items():
            for pid in src():
                v = cpu_s(pid)
                if v is not None:
                    self.groups[name][pid] = v

    def total(self, name: str) -> float:
        return sum(self.groups[name].values())

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def start(self) -> CpuMeter:
        self.sample()
        self.base = {n: self.total(n) for n in self.groups}
        self._t.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._t.join(5)
        self.sample()
        return {n: self.total(n) - self.base.get(n, 0.0) for n in self.groups}


def pct(vals: list[float], p: float) -> float | None:
    if not vals:
        return None
    vals = sorted(vals)
    k = (len(vals) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def _run(ns: argparse.Namespace, ctx: dict) -> dict:
    from agent.hub.db import HubDB
    from agent.store.db import connect
    from agent.sync import outbox
    from tests.hub.postgres import Postgres

    work = ctx["work"] = Path(tempfile.mkdtemp(prefix="fleet-sim-"))
    units_dir = work / "units"
    units_dir.mkdir()
    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    pg = ctx["pg"] = Postgres()
    pg.start()
    broker = ctx["broker"] = Broker(work)
    broker.start()
    log(f"PostgreSQL on port {pg.port}, mosquitto on {broker.port}, work dir {work}")
    HubDB(pg.dsn).close()  # the schema, before the workers race to create it
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    worker_args = [sys.executable, "-m", "agent.cli", "hub", "--broker", f"mqtt://127.0.0.1:{broker.port}",
                   "--dsn", pg.dsn, "--share", "hub", "--quiet", "--gap-grace", "5", "--replay-retry", "10",
                   "--replay-retry-max", "60", "--replay-rate", "50"]  # fmt: skip
    workers: list[subprocess.Popen] = []
    wlogs = [open(work / f"worker{i}.log", "ab") for i in range(ns.workers)]

    def start_worker(i: int) -> subprocess.Popen:
        p = subprocess.Popen(worker_args, cwd=ROOT, env=env, stdout=wlogs[i], stderr=subprocess.STDOUT)
        ctx["procs"].append(p)
        return p

    workers = [start_worker(i) for i in range(ns.workers)]
    per = [ns.units // ns.hosts + (1 if i < ns.units % ns.hosts else 0) for i in range(ns.hosts)]
    firsts = [sum(per[:i]) for i in range(ns.hosts)]

    def start_host(i: int) -> subprocess.Popen:
        cmd = [sys.executable, str(Path(__file__).resolve()), "host", "--first", str(firsts[i]), "--count",
               str(per[i]), "--port", str(broker.port), "--dir", str(units_dir), "--interval", str(ns.interval)]  # fmt: skip
        p = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=open(work / f"host{i}.log", "ab")
        )
        ctx["procs"].append(p)
        return p

    meter = CpuMeter()
    hosts: list[subprocess.Popen] = []
    all_hosts: list[int] = []
    all_workers: list[int] = [w.pid for w in workers]
    meter.watch("units", lambda: [p for p in all_hosts])
    meter.watch("broker", lambda: [broker.proc.pid] if broker.proc and broker.proc.poll() is None else [])
    meter.watch("hub workers", lambda: list(all_workers))
    pg_pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    meter.watch("postgresql", lambda: [pg_pid, *children_of(pg_pid)])
    t_start_hosts = time.monotonic()
    for i in range(ns.hosts):
        hosts.append(start_host(i))
        all_hosts.append(hosts[-1].pid)
    for h in hosts:
        assert h.stdout is not None and h.stdout.readline().strip() == b"ready", "a unit host failed to start"
    log(
        f"{ns.units} units up in {time.monotonic() - t_start_hosts:.1f} s on {ns.hosts} hosts; {ns.workers} hub workers"
    )
    meter.start()
    t0 = time.time()
    D = ns.duration
    outage = min(30.0, 0.1 * D)
    plan = [
        (0.25 * D, "broker down", lambda: broker.stop()),
        (0.25 * D + outage, "broker up", lambda: broker.start()),
        (0.50 * D, "SIGKILL hub worker 0", lambda: workers[0].kill()),
        (0.60 * D, "SIGKILL unit host 0", lambda: hosts[0].kill()),
        (0.60 * D + 2, "restart unit host 0", None),
        (0.70 * D, "restart hub worker 0", None),
    ]
    events: list[tuple[float, str]] = []
    for at, what, fn in plan:
        time.sleep(max(0.0, t0 + at - time.time()))
        if what == "restart unit host 0":
            hosts[0].wait(10)
            hosts[0] = start_host(0)
            all_hosts.append(hosts[0].pid)
            hosts[0].stdout.readline()
        elif what == "restart hub worker 0":
            workers[0].wait(10)
            workers[0] = start_worker(0)
            all_workers.append(workers[0].pid)
        else:
            fn()
        events.append((time.time(), what))
        log(what)
    time.sleep(max(0.0, t0 + D - time.time()))
    t_load_end = time.time()

    def unit_last_seqs() -> dict[str, int]:
        out = {}
        for f in units_dir.glob("u*.sqlite"):
            c = connect(f, readonly=True)
            try:
                out[f.stem] = outbox.state_value(c, "last_seq")
            finally:
                c.close()
        return out

    def unit_pending() -> dict[str, set[int]]:
        """Seqs each unit still holds as pending (not yet acknowledged by the broker: its to send)."""
        out = {}
        for f in units_dir.glob("u*.sqlite"):
            c = connect(f, readonly=True)
            try:
                out[f.stem] = {r[0] for r in c.execute("SELECT seq FROM outbox WHERE state = 'pending'")}
            finally:
                c.close()
        return out

    target = unit_last_seqs()
    view = HubDB(pg.dsn, migrate=False)

    def behind() -> tuple[int, int]:
        have = {
            r["device"]: r
            for r in view.query(
                "SELECT d.device, COALESCE(r.lo, 0) AS lo, COALESCE(r.hi, 0) AS hi, r.n FROM devices d"
                " LEFT JOIN (SELECT site, device, MIN(lo) AS lo, MAX(hi) AS hi, COUNT(*) AS n FROM ranges"
                " GROUP BY site, device) r ON r.site = d.site AND r.device = d.device"
            )
        }
        missing = sum(
            1
            for d, top in target.items()
            if not (d in have and have[d]["n"] == 1 and have[d]["lo"] == 1 and have[d]["hi"] >= top)
        )
        open_gaps = view.scalar("SELECT COUNT(*) FROM gaps WHERE state = 'open'")
        return missing, int(open_gaps or 0)

    log("load over; waiting for every unit's seqs to be held with no open gap")
    deadline = time.time() + ns.converge_timeout
    while True:
        m, g = behind()
        if (m == 0 and g == 0) or time.time() > deadline:
            break
        time.sleep(1.0)
    t_conv = time.time()
    converged = m == 0
    log(
        f"converged in {t_conv - t_load_end:.1f} s"
        if converged
        else f"NOT converged: {m} units behind, {g} open gaps"
    )
    for h in hosts:
        h.send_signal(signal.SIGTERM)
    for h in hosts:
        h.wait(120)
    final = unit_last_seqs()
    pending = unit_pending()
    # the units' last messages (and offline statuses) reach the hub: wait until what it holds stops changing
    t_stopped = time.time()
    prev, stable_since = None, time.time()
    while time.time() - stable_since < 5 and time.time() < t_stopped + 90:
        cur = view.scalar("SELECT COUNT(*) FROM messages")
        if cur != prev:
            prev, stable_since = cur, time.time()
        time.sleep(0.5)
    cpu = meter.stop()
    per_dev = {
        r["device"]: r
        for r in view.query(
            "SELECT device, COUNT(*) AS n, COUNT(DISTINCT seq) AS distinct_n, MIN(seq) AS lo, MAX(seq) AS hi"
            " FROM messages GROUP BY device"
        )
    }
    dups_dropped = {
        r["device"]: r["duplicates"] for r in view.query("SELECT device, duplicates FROM devices")
    }
    open_by_dev = {
        r["device"]: r["n"]
        for r in view.query("SELECT device, COUNT(*) AS n FROM gaps WHERE state = 'open' GROUP BY device")
    }
    lost_total = view.scalar("SELECT COALESCE(SUM(to_seq - from_seq + 1), 0) FROM lost")
    held: dict[str, set[int]] = {}
    for r in view.query("SELECT device, seq FROM messages"):
        held.setdefault(r["device"], set()).add(r["seq"])
    gaps_per_dev, dup_stored = {}, {}
    for d, top in final.items():
        r = per_dev.get(d, {"n": 0, "distinct_n": 0, "lo": None, "hi": None})
        # every seq the unit wrote is at the hub, or still pending at the unit (its to send next time)
        gaps_per_dev[d] = len(set(range(1, top + 1)) - held.get(d, set()) - pending.get(d, set()))
        dup_stored[d] = r["n"] - r["distinct_n"]
    lat_all, lat_steady = [], []
    windows = [(events[0][0] - 1, events[1][0] + 15)] + [(t - 1, t + 15) for t, w in events[2:]]
    for r in view.query("SELECT EXTRACT(EPOCH FROM received) AS rcv, EXTRACT(EPOCH FROM ts) AS ts, replay FROM messages"
                        " WHERE ts IS NOT NULL AND received >= to_timestamp(?) AND received <= to_timestamp(?)",
                        (t0, t_conv)):  # fmt: skip
        lat = float(r["rcv"]) - float(r["ts"])
        lat_all.append(lat)
        if not r["replay"] and not any(a <= float(r["ts"]) <= b for a, b in windows):
            lat_steady.append(lat)
    n_msgs = view.scalar("SELECT COUNT(*) FROM messages WHERE received >= to_timestamp(?)", (t0,))
    buckets = view.query(
        "SELECT FLOOR(EXTRACT(EPOCH FROM received) / 5) AS b, COUNT(*) AS n FROM messages"
        " WHERE received >= to_timestamp(?) GROUP BY 1",
        (events[1][0],),
    )
    sizes = view.query(
        "SELECT kind, COUNT(*) AS n, AVG(OCTET_LENGTH(payload::text)) AS bytes FROM messages GROUP BY kind"
    )
    stored = {
        t: view.scalar(f"SELECT pg_total_relation_size('{t}')")
        for t in ("messages", "volumes", "aqi", "events", "ranges", "gaps", "devices")
    }
    published = sum(final.values())
    wall = t_conv - t0
    res = {
        "units": ns.units,
        "hosts": ns.hosts,
        "workers": ns.workers,
        "interval_s": ns.interval,
        "duration_s": D,
        "outage_s": outage,
        "offered_msgs_per_s": round(published / max(1.0, t_load_end - t0), 1),
        "ingested_msgs": int(n_msgs or 0),
        "ingested_msgs_per_s": round((n_msgs or 0) / max(1.0, wall), 1),
        "best_5s_msgs_per_s_after_outage": round(max((b["n"] for b in buckets), default=0) / 5, 1),
        "latency_s": {
            "all_p50": pct(lat_all, 50),
            "all_p99": pct(lat_all, 99),
            "steady_p50": pct(lat_steady, 50),
            "steady_p99": pct(lat_steady, 99),
            "steady_n": len(lat_steady),
        },
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_s_per_1k_msgs": {k: round(v / max(1, n_msgs or 0) * 1000, 3) for k, v in cpu.items()},
        "payload_bytes": {r["kind"]: {"n": r["n"], "avg_bytes": round(float(r["bytes"]))} for r in sizes},
        "stored_bytes_per_msg": round(
            sum(stored.values()) / max(1, view.scalar("SELECT COUNT(*) FROM messages")), 1
        ),
        "stored_bytes": stored,
        "converged": converged,
        "convergence_s": round(t_conv - t_load_end, 1),
        "events": [(round(t - t0, 1), w) for t, w in events],
        "devices": len(final),
        "devices_with_gaps": sum(1 for v in gaps_per_dev.values() if v),
        "seqs_missing_total": sum(gaps_per_dev.values()),
        "open_gaps_rows": sum(open_by_dev.values()),
        "lost_seqs_reported": int(lost_total or 0),
        "duplicates_stored_total": sum(dup_stored.values()),
        "duplicates_delivered_and_dropped": sum(dups_dropped.values()),
        "gaps_closed": int(view.scalar("SELECT COUNT(*) FROM gaps WHERE state = 'closed'") or 0),
        "replays_requested": int(view.scalar("SELECT COALESCE(SUM(requests), 0) FROM gaps") or 0),
        "pending_at_units_after_stop": sum(len(v) for v in pending.values()),
        "per_device": {
            d: {
                "last_seq": final[d],
                "gaps": gaps_per_dev[d],
                "duplicates_stored": dup_stored[d],
                "pending_at_unit": len(pending.get(d, ())),
            }
            for d in sorted(final)
        },
    }
    view.close()
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        try:
            w.wait(20)
        except subprocess.TimeoutExpired:
            w.kill()
    return res


def run(ns: argparse.Namespace) -> dict:
    """:func:`_run`, and whatever happens, nothing of it left running (units, workers, broker, PostgreSQL)."""
    ctx: dict = {"procs": []}
    try:
        return _run(ns, ctx)
    finally:
        for p in ctx["procs"]:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if "broker" in ctx:
            ctx["broker"].stop()
        if "pg" in ctx:
            ctx["pg"].stop()
        if "work" in ctx:
            shutil.rmtree(ctx["work"], ignore_errors=True)


def report(r: dict) -> str:
    c, k = r["cpu_s"], r["cpu_s_per_1k_msgs"]
    lat = r["latency_s"]
    f = lambda v: "-" if v is None else f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"  # noqa: E731
    lines = [
        f"fleet: {r['units']} units on {r['hosts']} hosts, a summary every {r['interval_s']:g} s, "
        f"{r['workers']} hub workers on one PostgreSQL, {r['duration_s']:g} s of load",
        "disruptions (s after start): " + "; ".join(f"{t:g} {w}" for t, w in r["events"]),
        f"offered by the units:        {r['offered_msgs_per_s']} msgs/s",
        f"ingested (whole run):        {r['ingested_msgs_per_s']} msgs/s ({r['ingested_msgs']} messages)",
        f"best 5 s after the outage:   {r['best_5s_msgs_per_s_after_outage']} msgs/s (backlog drain)",
        f"end-to-end latency:          undisturbed p50 {f(lat['steady_p50'])}, p99 {f(lat['steady_p99'])}; "
        f"all messages p50 {f(lat['all_p50'])}, p99 {f(lat['all_p99'])}",
        "CPU per 1,000 messages:      " + ", ".join(f"{n} {k[n]:.2f} s" for n in k) + "  (totals: "
        + ", ".join(f"{n} {c[n]:.0f} s" for n in c) + ")",
        "payload bytes (avg):         " + ", ".join(f"{kind} {v['avg_bytes']} B" for kind, v in r["payload_bytes"].items()),
        f"stored in PostgreSQL:        {r['stored_bytes_per_msg']:.0f} B per message (tables + indexes)",
        f"converged {r['convergence_s']} s after the load: "
        f"{r['gaps_closed']} gaps closed (by replay or late arrival), {r['replays_requested']} replay requests",
        f"per device after convergence: devices with gaps {r['devices_with_gaps']}/{r['devices']} "
        f"(seqs missing {r['seqs_missing_total']}, lost {r['lost_seqs_reported']}), duplicates stored "
        f"{r['duplicates_stored_total']}; duplicates delivered and dropped {r['duplicates_delivered_and_dropped']}; "
        f"left pending at the units by their clean stop {r['pending_at_units_after_stop']}",
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode")
    h = sub.add_parser("host", help="(internal) run a group of simulated units")
    h.add_argument("--first", type=int, required=True)
    h.add_argument("--count", type=int, required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--dir", required=True)
    h.add_argument("--interval", type=float, required=True)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    ap.add_argument("--interval", type=float, default=5.0, help="summary interval of the simulated units (s)")
    ap.add_argument("--workers", type=int, default=3, choices=range(1, 9))
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--converge-timeout", type=float, default=240.0)
    ap.add_argument("--json", help="write every figure to this file")
    ns = ap.parse_args(argv)
    if ns.mode == "host":
        return host_main(ns)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (run's finally) when told to stop
    r = run(ns)
    print(report(r), flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps(r, indent=2))
    return 0 if r["converged"] and r["devices_with_gaps"] == 0 and r["duplicates_stored_total"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
