"""Query latency and database growth on a month of a busy junction (issue #15 item 5).

    .venv/bin/python benchmarks/month_db.py [--days 30] [--crossings-per-s 5] [--sensors 3] [--runs 3] [--json]

Generates, through the agent's own schema and migrations, what a busy unit stores in ``--days``:
``--crossings-per-s`` line crossings a second (2 lines x 2 directions, 4 classes; their tracks and
closed 15-minute ``volume_bins``), and one reading a second from each of ``--sensors`` PMS5003s (the
three PM metrics per reading, as the driver stores them). Detections are not stored at this load
(``storage.store_detections = false`` is what a unit counting 5 vehicles a second runs with; their
rows would be pruned first by the budget anyway).

Then, as a technician would, it times the installed ``edge-agent counts --since 30d --db FILE`` and
``edge-agent readings --since 7d --db FILE`` (each ``--runs`` times, the process's whole wall time),
prints SQLite's ``EXPLAIN QUERY PLAN`` for their queries (a ``SCAN`` of a big table is flagged), the
database's bytes per day at this load, and what the storage budget (``storage.max_db_mb``) keeps:
the real retention pass is run on a copy with a budget of a third of the file.

Figures, not a pass/fail test (tests/ops/test_month_db.py runs a small version for the harness).
Targets: ``counts --since 30d`` and ``readings --since 7d`` answer in under 2 s on a month.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agent.parts  # noqa: E402,F401 - every part's tables
from agent.store.db import Database  # noqa: E402
from agent.timefmt import iso_utc  # noqa: E402

TARGET_S = 2.0
LINES = ("north", "south")
DIRS = ("in", "out")
CLASSES = ("car", "car", "car", "car", "truck", "bus", "motorcycle")  # weighted: most are cars
METRICS = (("pm1_0", "ug/m3"), ("pm2_5", "ug/m3"), ("pm10", "ug/m3"))
CAMERA = "junction"
BIN_S = 900


def edge_agent_exe() -> str:
    cand = Path(sys.executable).parent / "edge-agent"
    return str(cand) if cand.exists() else (shutil.which("edge-agent") or "edge-agent")


def generate(
    path: Path, *, days: float, per_s: float, sensors: int, now: float, seed: int = 7
) -> dict[str, Any]:
    """Fill ``path`` with ``days`` of crossings, tracks, bins and readings ending at ``now``."""
    rng = random.Random(seed)
    Database(path, check="off").close()  # the agent's own schema, every migration
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    t0 = now - days * 86400
    n_cross = int(days * 86400 * per_s)
    step = 1.0 / per_s
    bins: dict[tuple, int] = {}
    tid = 0
    batch_c: list[tuple] = []
    batch_t: list[tuple] = []

    def flush() -> None:
        conn.executemany(
            "INSERT INTO crossings (ts, camera, line, direction, class, track_id, x, y) VALUES (?,?,?,?,?,?,?,?)",
            batch_c,
        )
        conn.executemany(
            "INSERT INTO tracks (camera, id, class, first_ts, last_ts, frames, entry_x, entry_y, exit_x, exit_y,"
            " crossings) VALUES (?,?,?,?,?,?,?,?,?,?,1)",
            batch_t,
        )
        batch_c.clear()
        batch_t.clear()

    for i in range(n_cross):
        ts = t0 + i * step + rng.random() * step
        line, d, cls = rng.choice(LINES), rng.choice(DIRS), rng.choice(CLASSES)
        tid += 1
        iso = iso_utc(ts)
        batch_c.append((iso, CAMERA, line, d, cls, tid, 640.0, 400.0))
        batch_t.append((CAMERA, tid, cls, iso_utc(ts - 3), iso, 30, 600.0, 100.0, 640.0, 700.0))
        b = int(ts // BIN_S * BIN_S)
        if ts < now // BIN_S * BIN_S:  # the open bin is not closed yet: no row
            bins[(line, d, cls, b)] = bins.get((line, d, cls, b), 0) + 1
        if len(batch_c) >= 50_000:
            flush()
    flush()
    conn.executemany(
        "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [(CAMERA, ln, d, c, iso_utc(b), BIN_S, n, float(BIN_S)) for (ln, d, c, b), n in bins.items()],
    )
    n_read = 0
    rows: list[tuple] = []
    for s in range(sensors):
        name = f"pm{s + 1}"
        for k in range(int(days * 86400)):
            iso = iso_utc(t0 + k + 0.1 * s)
            for metric, unit in METRICS:
                rows.append((iso, name, metric, round(8 + 4 * rng.random(), 1), unit, 0))
            if len(rows) >= 60_000:
                conn.executemany(
                    "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)",
                    rows,
                )
                n_read += len(rows)
                rows.clear()
    if rows:
        conn.executemany(
            "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
        )
        n_read += len(rows)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return {"crossings": n_cross, "bins": len(bins), "readings": n_read, "bytes": path.stat().st_size}


def time_cli(args: list[str], runs: int) -> dict[str, Any]:
    times, out = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run([edge_agent_exe(), *args], capture_output=True, text=True, timeout=900)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            raise SystemExit(
                f"error: edge-agent {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-500:]}"
            )
        out = p.stdout
    return {
        "p50_s": statistics.median(times),
        "max_s": max(times),
        "runs": runs,
        "bytes_out": len(out),
        "out": out,
    }


def plans(path: Path, now: float) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the queries behind the two commands (the same SQL they run)."""
    from agent.analytics.volumes import volumes_plan_sql

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    since30, since7 = iso_utc(now - 30 * 86400), iso_utc(now - 7 * 86400)
    out = {}
    for name, (sql, args) in {
        **{f"counts: {k}": v for k, v in volumes_plan_sql(since30, BIN_S, None).items()},
        "readings": (
            "SELECT id, ts, sensor, metric, value, unit, quality FROM readings WHERE ts >= ? ORDER BY id DESC LIMIT ?",
            (since7, 500),
        ),
    }.items():
        out[name] = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
    conn.close()
    return out


def retention(path: Path, budget_mb: float, now: float) -> dict[str, Any]:
    """The real retention pass (the agent's ``Retention`` through its writer) on a copy of the month,
    with a budget below its size. Every window up to the last 15 minutes has been summarised."""
    from agent.store.writer import Writer
    from agent.sync.retention import Retention
    from agent.sync.topics import Topics

    work = path.with_name("retention-copy.sqlite")
    shutil.copy(path, work)
    before = work.stat().st_size
    db = Database(work, check="off", max_db_mb=budget_mb)
    last = now // BIN_S * BIN_S
    db.conn.execute(
        "INSERT INTO summary_windows (start, end, seq, written) VALUES (?, ?, 0, ?)",
        (iso_utc(last - BIN_S), iso_utc(last), iso_utc(last)),
    )
    db.conn.commit()
    writer = Writer(db, max_delay_s=0.05).start()
    try:
        r = Retention(budget_mb, writer, db.reader, Topics("city", "bench", "month"), chunk=20_000)
        t = time.perf_counter()
        report = r.run()
        seconds = time.perf_counter() - t
    finally:
        writer.stop()
    conn = db.conn
    left = {
        t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - our own table names
        for t in ("crossings", "readings", "volume_bins")
    }
    db.close()
    out = {
        "budget_mb": budget_mb,
        "before_mb": before / 2**20,
        "used_after_mb": report.get("used_after", report["used_before"]) / 2**20,
        "seconds": seconds,
        "removed": report["removed"],
        "rows_left": left,
    }
    work.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--crossings-per-s", type=float, default=5)
    ap.add_argument("--sensors", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", help="Keep the database here (default: a temporary directory, removed).")
    ap.add_argument(
        "--no-retention", action="store_true", help="Skip the retention pass (it copies the file)."
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tmp = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="edge-agent-month-"))
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "month.sqlite"
    path.unlink(missing_ok=True)
    now = time.time()
    try:
        t = time.perf_counter()
        gen = generate(path, days=a.days, per_s=a.crossings_per_s, sensors=a.sensors, now=now)
        gen["seconds"] = time.perf_counter() - t
        since = f"{int(a.days)}d" if a.days >= 1 else f"{int(a.days * 86400)}s"
        counts = time_cli(["counts", "--since", since, "--db", str(path), "--json"], a.runs)
        readings = time_cli(
            ["readings", "--since", "7d" if a.days >= 7 else since, "--db", str(path)], a.runs
        )
        counted = sum(r["count"] for r in json.loads(counts.pop("out"))["rows"])
        readings.pop("out")
        res: dict[str, Any] = {
            "days": a.days,
            "crossings_per_s": a.crossings_per_s,
            "sensors": a.sensors,
            "generated": gen,
            "mb_per_day": gen["bytes"] / 2**20 / a.days,
            "counts_since_all": counts,
            "counts_total": counted,
            "readings_since_7d": readings,
            "plans": plans(path, now),
            "target_s": TARGET_S,
        }
        # `readings` walks the table newest first by rowid and stops at its --limit (500): a SCAN in the
        # plan, a few hundred rows in fact; every other SCAN is a read of the whole table
        res["scans"] = [
            f"{q}: {step}"
            for q, steps in res["plans"].items()
            for step in steps
            if step.startswith("SCAN") and not (q == "readings" and step == "SCAN readings")
        ]
        if not a.no_retention:
            res["retention"] = retention(path, round(gen["bytes"] / 2**20 / 3, 1), now)
    finally:
        if not a.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    g = res["generated"]
    print(
        f"month of a busy junction: {a.days:g} days, {a.crossings_per_s:g} crossings/s ({g['crossings']:,} rows,"
        f" {g['bins']:,} bins), {a.sensors} sensors at 1 reading/s ({g['readings']:,} rows), generated in {g['seconds']:.0f} s"
    )
    print(f"  database: {g['bytes'] / 2**20:,.0f} MB = {res['mb_per_day']:.1f} MB per day at this load")
    for key, label in (
        ("counts_since_all", f"counts --since {since} --json"),
        ("readings_since_7d", "readings --since 7d"),
    ):
        r = res[key]
        ok = "ok" if r["p50_s"] <= TARGET_S else "MISSED"
        print(
            f"  edge-agent {label:28s} p50 {r['p50_s']:.2f} s  max {r['max_s']:.2f} s  (target <= {TARGET_S:g} s: {ok})"
        )
    print(f"  counted by counts: {res['counts_total']:,} of {g['crossings']:,} crossings")
    for q, steps in res["plans"].items():
        print(f"  plan {q}: " + " | ".join(steps))
    print("  full scans of a table: " + (", ".join(res["scans"]) if res["scans"] else "none"))
    if "retention" in res:
        r = res["retention"]
        print(
            f"  retention to a {r['budget_mb']:g} MB budget: {r['before_mb']:.0f} MB -> {r['used_after_mb']:.0f} MB used"
            f" in {r['seconds']:.1f} s (removed {r['removed']}); rows left {r['rows_left']}; every 15-minute bin kept"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
