"""The fleet simulation in a small size (benchmarks/fleet_sim.py; the full size is a benchmark): real units,
mosquitto, two hub workers and PostgreSQL, with a broker outage, a killed worker and killed units; after
convergence every unit's seqs are held once, with no gap."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.hub.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_small_fleet_converges_with_no_gap_and_no_duplicate_stored(tmp_path, postgres):
    out = tmp_path / "fleet.json"
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "fleet_sim.py"), "--units", "50", "--duration", "60",
         "--interval", "3", "--workers", "2", "--hosts", "2", "--converge-timeout", "180", "--json", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = p.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        p.terminate()  # the benchmark stops everything it started (units, workers, broker, PostgreSQL)
        stdout, stderr = p.communicate(timeout=60)
    r = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    assert out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [w for _, w in res["events"]] == [
        "broker down",
        "broker up",
        "SIGKILL hub worker 0",
        "SIGKILL unit host 0",
        "restart unit host 0",
        "restart hub worker 0",
    ]
    assert res["converged"], r.stdout[-3000:]
    assert res["devices"] == 50 and res["devices_with_gaps"] == 0 and res["duplicates_stored_total"] == 0
    assert all(
        d["gaps"] == 0 and d["duplicates_stored"] == 0 and d["last_seq"] > 5
        for d in res["per_device"].values()
    )
    assert res["ingested_msgs"] >= sum(d["last_seq"] for d in res["per_device"].values()) * 0.9
    assert res["lost_seqs_reported"] == 0 and res["open_gaps_rows"] == 0
    assert r.returncode == 0 and "devices with gaps 0/50" in r.stdout, r.stdout[-3000:]
    assert res["latency_s"]["steady_p50"] is not None and set(res["cpu_s_per_1k_msgs"]) == {
        "units",
        "broker",
        "hub workers",
        "postgresql",
    }
