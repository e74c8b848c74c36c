"""Pipeline.health(): the liveness snapshot the API's /healthz reads; and the reload plan (pure)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.config import AgentConfig, CameraConfig
from agent.pipeline import Pipeline
from agent.pipeline_reload import plan_reload
from agent.sources.camera import CameraSource
from agent.store.db import Database
from agent.store.writer import Writer


def test_health_before_start_has_no_writer_no_results_no_cameras():
    assert Pipeline(AgentConfig()).health() == {
        "writer_alive": False,
        "results_age_s": None,
        "cameras": {},
    }


def test_health_reads_the_writer_the_results_stage_and_the_cameras(tmp_path: Path):
    pipe = Pipeline(AgentConfig())
    db = Database(tmp_path / "agent.sqlite")
    pipe.writer = Writer(db).start()
    try:
        pipe.results = SimpleNamespace(last_progress=time.monotonic() - 12.0)
        road = CameraSource(CameraConfig(name="road", source=str(tmp_path / "none.mp4")))
        gate = CameraSource(CameraConfig(name="gate", source=str(tmp_path / "none.mp4")))
        road.state, gate.state = "up", "reconnecting"
        pipe.cameras = {"road": road, "gate": gate}
        h = pipe.health()
        assert h["writer_alive"] is True
        assert h["results_age_s"] == pytest.approx(12.0, abs=2.0)
        assert h["cameras"] == {"road": "up", "gate": "reconnecting"}
    finally:
        pipe.writer.stop()
        db.close()
    assert pipe.health()["writer_alive"] is False  # the thread has ended


def _cfg(**cams: dict) -> AgentConfig:
    cfg = AgentConfig()
    cfg.cameras = [CameraConfig(name=n, source="/tmp/x.mp4", **kw) for n, kw in cams.items()]
    return cfg


def test_reload_plan_sorts_cameras_by_what_changes():
    old = _cfg(a={}, b={}, c={}, d={})
    new = _cfg(a={}, b={"detect_fps": 2.0}, c={"threshold": 0.7}, e={})
    new.api.port = old.api.port + 1
    plan = plan_reload(old, new)
    report = plan.report()
    assert report == {
        "added": ["e"],
        "removed": ["d"],
        "restarted": ["b"],
        "updated": ["c"],
        "needs_restart": ["api"],
    }
    assert [(c.name, c.kind) for c in plan.changes] == [
        ("a", "same"),
        ("b", "restarted"),
        ("c", "updated"),
        ("e", "added"),
    ]
    # the sections that need a restart stay as they run; cameras come from the new file
    assert plan.applied.api == old.api and [c.name for c in plan.applied.cameras] == ["a", "b", "c", "e"]
