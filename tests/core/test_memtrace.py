"""agent/service/memtrace.py: off unless asked; baseline, then the lines that grew since."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from agent.service.memtrace import MemTrace, install_from_env


def test_off_by_default():
    assert install_from_env({}) is None
    assert install_from_env({"EDGE_AGENT_TRACEMALLOC": "0"}) is None


def test_baseline_then_growers_name_the_line_that_grew(tmp_path):
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start(1)
    try:
        out = tmp_path / "growth.json"
        mt = MemTrace(out, top_n=10)
        assert mt.report()["kind"] == "baseline" and json.loads(out.read_text())["growers"] == []
        hoard = [f"item-{i}" * 4 for i in range(20_000)]  # the grower
        assert mt.report()["kind"] == "growth"
        doc = json.loads(out.read_text())
        assert doc["kind"] == "growth" and doc["total_diff_kib"] > 500
        top = doc["growers"][0]
        src = Path(__file__).read_text().splitlines()
        line = next(i for i, ln in enumerate(src, 1) if "# the grower" in ln)
        assert top["where"].endswith(f"test_memtrace.py:{line}"), doc["growers"][:3]
        assert top["count_diff"] >= 19_000
        del hoard
    finally:
        if not was:
            tracemalloc.stop()
