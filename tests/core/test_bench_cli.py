"""`edge-agent bench` runs as a user runs it and prints the figures its targets are stated in (issue
#15): the pipeline/invoke ratio, peak RSS and per-stage CPU. No figure is asserted against a target
here (a timed test would only measure the machine); the benchmark prints them beside their targets."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_bench_json_has_the_figures_of_its_targets(media_path):
    r = run_cli(
        "bench",
        "--clip",
        str(media_path("4ku_traffic.mp4")),
        "--raw-frames",
        "10",
        "--max-frames",
        "20",
        "--json",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["pipeline_frames"] >= 20 and out["raw_invoke_fps"] > 0 and out["pipeline_fps"] > 0
    assert out["ratio"] > 0 and out["peak_rss_mb"] > 0 and out["overhead_vs_invoke"] > 0
    assert out["stage_cpu_ms_per_frame"]["total"] > 0
    assert out["detections_stored"] >= 0
