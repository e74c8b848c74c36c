"""The runner against the real store: tables, bins, flush, reconfigure, summary section, CLI."""

from __future__ import annotations

import json

import numpy as np

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.analytics.summary import analytics_section
from agent.sections import summary_sections
from agent.store.db import open_database
from agent.store.writer import Writer
from agent.timefmt import iso_utc
from agent.types import Detection, Frame, InferenceResult

CFG = {
    "lines": [{"name": "l", "points": [[0, 0.5], [1, 0.5]], "directions": ["down", "up"]}],
    "zones": [{"name": "z", "points": [[0, 0], [1, 0], [1, 0.45], [0, 0.45]]}],
    "bin_minutes": 1,
}


def _frame(i, ts, boxes):
    return InferenceResult(
        Frame("cam", i, ts, ts, np.zeros((200, 400, 3), np.uint8)),
        "m",
        [Detection("car", 2, 0.9, tuple(b)) for b in boxes],
    )


def _drive(r, t0, n_cars, start_frame=0):
    """Cars one after the other driving down through the line (y 100 of 200) at 10 fps."""
    i = start_frame
    for c in range(n_cars):
        for k in range(30):
            y = 10 + k * 6
            r.process(_frame(i, t0 + i * 0.1, [(100 + c, y - 20, 140 + c, y)]))
            i += 1
        for _ in range(20):  # gap: the track closes
            r.process(_frame(i, t0 + i * 0.1, []))
            i += 1
    return i


def test_runner_writes_tracks_crossings_bins_and_summary(tmp_path, cli):
    db = open_database(tmp_path / "a.sqlite")
    w = Writer(db).start()
    t0 = 1_800_000_000.0 - (1_800_000_000 % 60)
    r = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), w)
    i = _drive(r, t0, 3)  # 15 s
    r.reconfigure(
        CameraAnalytics.model_validate(
            {**CFG, "lines": CFG["lines"] + [{"name": "l2", "points": [[0, 0.8], [1, 0.8]]}]}
        )
    )
    i = _drive(r, t0, 2, i)  # 10 s more, same bin
    st = r.state()
    assert st["current_bin"]["l"] == {"down": {"car": 5}}
    assert st["current_bin"]["l2"] == {"forward": {"car": 2}}
    _drive(r, t0 + 60, 1, i)  # next bin: closes the first
    r.flush()
    w.stop()
    conn = db.reader()
    assert conn.execute("SELECT count(*) FROM tracks WHERE camera='cam'").fetchone()[0] == 6
    row = conn.execute(
        "SELECT class, frames, crossings, entry_y, exit_y FROM tracks ORDER BY id LIMIT 1"
    ).fetchone()
    assert row[0] == "car" and row[1] == 30 and row[2] == 1 and row[3] < row[4]
    bins = conn.execute(
        "SELECT line, direction, count, coverage_s FROM volume_bins WHERE class='car' AND count > 0 ORDER BY bin_start, line"
    ).fetchall()
    assert (
        bins[0][:3] == ("l", "down", 5) and 24 < bins[0][3] < 26
    )  # 25 s observed, then an outage: a partial bin
    assert conn.execute("SELECT count(*) FROM crossings").fetchone()[0] == 5 + 2 + 2
    fc = conn.execute(
        "SELECT horizon_min, predicted FROM forecasts WHERE line='l' AND direction='down'"
    ).fetchall()
    assert fc  # issued at the first bin close (1-minute bins: one horizon per multiple)
    sec = analytics_section(conn, iso_utc(t0), iso_utc(t0 + 3600))
    assert "analytics" in summary_sections()
    cam = sec["cameras"]["cam"]
    assert cam["volumes"]["l"]["down"]["car"] == 6
    assert cam["zones"]["z"]["peak"] >= 1 and cam["zones"]["z"]["dwell_s"]["n"] == 6
    assert cam["bins"][0]["counts"]["l"]["down"]["car"] == 5
    assert cam["forecasts"]["l"]["down"][0]["expected"] >= 0
    json.dumps(sec)
    assert "box" not in json.dumps(sec)
    # the CLI reads the same database, read-only
    res = cli("counts", "--db", str(tmp_path / "a.sqlite"), "--since", "100000d", "--bin", "1h", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert sum(x["count"] for x in out["rows"] if x["line"] == "l" and x["direction"] == "down") == 6
    res = cli("counts", "--db", str(tmp_path / "a.sqlite"), "--since", "100000d")
    assert res.returncode == 0 and "down" in res.stdout
    res = cli("counts", "--db", str(tmp_path / "missing.sqlite"))
    assert res.returncode != 0 and "does not exist" in res.stderr


def test_restart_continues_track_ids_and_forecast_history(tmp_path):
    db = open_database(tmp_path / "a.sqlite")
    w = Writer(db).start()
    t0 = 1_800_000_000.0 - (1_800_000_000 % 60)
    r = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), w)
    _drive(r, t0, 2)
    r.flush()
    w.flush()
    r2 = AnalyticsRunner("cam", CameraAnalytics.model_validate(CFG), w)
    assert r2.tracker.next_id == 3
    w.stop()


def test_config_rejects_bad_references():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CameraAnalytics.model_validate(
            {**CFG, "speed_segments": [{"name": "s", "line_a": "l", "line_b": "nope"}]}
        )
    with pytest.raises(ValidationError):
        CameraAnalytics.model_validate({**CFG, "bin_minutes": 7})
    with pytest.raises(ValidationError):
        CameraAnalytics.model_validate(
            {**CFG, "lines": [{"name": "l", "points": [[0, 0], [1, 1]], "speed": 3}]}
        )
