"""The month-of-data benchmark (benchmarks/month_db.py) run small: the harness works end to end.

Two and a half hours of a busy junction (the last open 15 minutes, which retention may not prune, stay a small share) is generated through the agent's schema, the installed
``edge-agent counts`` and ``readings`` answer on it, the query plans are read (the counts queries
search an index, no table is scanned), and the real retention pass holds a budget of a third of the
file while every 15-minute bin stays. Times are printed by the benchmark, never checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(300)
def test_small_month_db_counts_everything_searches_indexes_and_holds_its_budget(tmp_path):
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "month_db.py"), "--days", "0.1", "--runs", "1", "--json",
         "--workdir", str(tmp_path / "month")],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    gen = res["generated"]
    assert gen["crossings"] == int(0.1 * 86400 * 5) and gen["readings"] == int(0.1 * 86400) * 3 * 3
    # counts --since covers the generated span; the first seconds may fall before the CLI's own "now - span"
    assert 0.97 * gen["crossings"] <= res["counts_total"] <= gen["crossings"]
    counts_plans = [s for q, steps in res["plans"].items() if q.startswith("counts") for s in steps]
    assert counts_plans and not [s for s in counts_plans if s.startswith("SCAN")], res["plans"]
    r = res["retention"]
    assert r["used_after_mb"] <= r["budget_mb"] and r["removed"], r
    assert r["rows_left"]["volume_bins"] == gen["bins"]  # every bin kept
    for key in ("counts_since_all", "readings_since_7d"):
        assert res[key]["p50_s"] > 0 and res[key]["runs"] == 1
