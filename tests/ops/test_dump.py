"""`edge-agent dump`: tables as CSV / JSON / NDJSON through sqlite-utils (issue #16, item 10)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from agent.store.db import Database
from agent.timefmt import iso_utc

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))


def _db(tmp_path) -> Path:
    p = tmp_path / "a.sqlite"
    d = Database(p)
    d.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit) VALUES (?, 'pm', 'pm2_5', ?, 'ug/m3')",
        [(iso_utc(1_700_000_000 + i), float(i)) for i in range(5)],
    )
    d.close()
    return p


def _dump(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_CONFIG"}
    return subprocess.run([EDGE_AGENT, "dump", *args], capture_output=True, text=True, timeout=60, env=env)


def test_dump_formats(tmp_path):
    db = str(_db(tmp_path))
    rows = list(csv.DictReader(io.StringIO(_dump("readings", "--db", db).stdout)))
    assert [float(r["value"]) for r in rows] == [0, 1, 2, 3, 4] and rows[0]["sensor"] == "pm"
    nd = [json.loads(ln) for ln in _dump("readings", "--db", db, "--format", "ndjson").stdout.splitlines()]
    assert len(nd) == 5 and nd[0]["metric"] == "pm2_5"
    js = json.loads(
        _dump("readings", "--db", db, "--format", "json", "--since", iso_utc(1_700_000_003)).stdout
    )
    assert [r["value"] for r in js] == [3.0, 4.0]
    assert len(json.loads(_dump("readings", "--db", db, "--format", "json", "--limit", "2").stdout)) == 2


def test_dump_unknown_table_lists_the_tables(tmp_path):
    r = _dump("nope", "--db", str(_db(tmp_path)))
    assert (
        r.returncode == 1 and "error:" in r.stderr and "readings" in r.stderr and "Traceback" not in r.stderr
    )
