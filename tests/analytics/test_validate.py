"""`edge-agent validate` and whole-file runs on a real clip (the first 46 s of the Intel walk-by clip,
two people leaving across the exit line), plus the truth formats and the matching rules."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import pytest

from agent.analytics.identity import identity
from agent.analytics.truth import TruthEvent, load_truth
from agent.analytics.validate import Counted, match_direction
from agent.errors import ConfigError
from tests.conftest import ROOT

# running the detector over a whole clip takes minutes on a loaded machine (CI): more than the
# suite's per-test timeout, which is meant to catch hangs
pytestmark = pytest.mark.timeout(1800)

ARTIFACTS = ROOT / "test-artifacts" / "analytics"
FRAMES = 460  # people 1 and 2 leave across x=600 at frames 187 and 437 (tests/data/intel_person_truth.json)


@pytest.fixture(scope="module")
def short_clip(media_path, tmp_path_factory) -> Path:
    """The first FRAMES frames of the walk-by clip, re-encoded (a real recording, shorter)."""
    src = cv2.VideoCapture(str(media_path("intel_one-by-one-person-detection.mp4")))
    out = tmp_path_factory.mktemp("clip") / "walkby_short.avi"
    fps = src.get(cv2.CAP_PROP_FPS)
    w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (768, 432))
    for _ in range(FRAMES):
        ok, img = src.read()
        assert ok
        w.write(img)
    w.release()
    src.release()
    return out


@pytest.fixture(scope="module")
def short_truth(tmp_path_factory) -> Path:
    doc = json.loads((ROOT / "tests" / "data" / "intel_person_truth.json").read_text())
    for ln in doc["lines"]:
        ln["crossings"] = [c for c in ln["crossings"] if c["frame"] < FRAMES - 15]
    doc["frames"] = FRAMES
    p = tmp_path_factory.mktemp("truth") / "walkby_short.json"
    p.write_text(json.dumps(doc))
    return p


def test_validate_on_a_real_clip_reports_and_draws(cli, short_clip, short_truth):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    r = cli(
        "validate",
        str(short_clip),
        "--truth",
        str(short_truth),
        "--json",
        "--pictures",
        str(ARTIFACTS),
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    by = {(x["line"], x["direction"]): x for x in doc["lines"]}
    exit_right = by[("x600_exit", "right")]
    assert exit_right["truth"] == 2 and exit_right["counted"] == 2 and exit_right["matched"] == 2
    table_right = by[("x440_table", "right")]  # they stood on this line at the table
    assert table_right["truth"] == 2 and table_right["matched"] == 2
    assert by[("x600_exit", "left")]["counted"] == 0
    assert doc["ok"] is True and doc["total"]["accuracy"] == 1.0
    # two people: two confirmed tracks, not fragments of them
    assert doc["tracking"]["tracks"] == 2, doc["tracking"]
    # the truth names its people (p1, p2 on both lines): each counted by one track on both lines
    ident = doc["identity"]
    assert ident["objects"] == 2 and ident["tracks"] == 2, ident
    assert ident["fragments"] == 0 and ident["id_switches"] == 0, ident
    assert exit_right["per_class"]["person"] == {"truth": 2, "counted": 2, "matched_same_class": 2}
    pics = [Path(p) for p in doc["pictures"]]
    assert len(pics) == 2 and all(p.exists() and p.stat().st_size > 10_000 for p in pics)
    img = cv2.imread(str(pics[0]))
    assert img.shape[0] >= FRAMES  # one row (or more) per frame


def test_validate_fails_with_exit_1_and_names_the_misses(cli, short_clip, short_truth, tmp_path):
    doc = json.loads(short_truth.read_text())
    doc["lines"][1]["crossings"].append({"direction": "right", "frame": 300, "x": 600, "class": "person"})
    bad = tmp_path / "more.json"
    bad.write_text(json.dumps(doc))
    r = cli("validate", str(short_clip), "--truth", str(bad), "--no-pictures", timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "missed x600_exit/right at frames 300" in r.stdout
    assert "result: FAIL" in r.stdout and "x600_exit/right -33.3 %" in r.stdout


def test_validate_bad_inputs_are_errors_not_tracebacks(cli, short_clip, tmp_path):
    r = cli("validate", str(short_clip), "--truth", str(tmp_path / "none.json"))
    assert r.returncode == 2 and "error:" in r.stderr and "fix:" in r.stderr
    t = tmp_path / "t.json"
    t.write_text('{"lines": [{"name": "a", "crossings": [{"frame": 3}]}]}')
    r = cli("validate", str(short_clip), "--truth", str(t))
    assert r.returncode == 2 and "no direction" in r.stderr
    t.write_text('{"lines": [{"name": "a", "points": [[0, 1], [1, 1]], "directions": ["l", "r"]}]}')
    r = cli("validate", str(tmp_path / "nope.mp4"), "--truth", str(t))
    assert r.returncode == 4 and "error:" in r.stderr
    r = cli("validate", str(short_clip), "--truth", str(t), "--line", "x=1,2,3")
    assert r.returncode == 2 and "NAME=x1,y1,x2,y2" in r.stderr
    assert all("Traceback" not in x for x in (r.stderr, r.stdout))


def test_run_of_a_file_ends_by_itself_prints_counts_and_uses_media_time(cli, short_clip, tmp_path):
    db = tmp_path / "agent.sqlite"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[storage]
path = "{db}"
[api]
enabled = false
[[cameras]]
name = "hall"
source = "{short_clip}"
loop = false
realtime = false
detect_fps = 10
start_time = "2026-05-04T07:30:00Z"
[[cameras.analytics.lines]]
name = "exit"
points = [[600, 432], [600, 0]]
directions = ["right", "left"]
"""
    )
    r = cli("run", "--config", str(cfg), timeout=900)  # no --duration, no --exit-on-end
    assert r.returncode == 0, r.stdout + r.stderr
    assert "counted on camera hall" in r.stdout
    assert "line exit: right 2 (person 2); left 0" in r.stdout
    assert f"edge-agent counts --config {cfg}" in r.stdout
    conn = sqlite3.connect(db)
    ts = [row[0] for row in conn.execute("SELECT ts FROM crossings ORDER BY ts")]
    # stamped start_time + position in the file: people 1 and 2 leave at about 18.7 s and 43.7 s
    assert len(ts) == 2
    assert ts[0].startswith("2026-05-04T07:30:1") and ts[1].startswith("2026-05-04T07:30:4"), ts
    bins = conn.execute("SELECT bin_start FROM volume_bins").fetchall()
    assert bins and all(b[0].startswith("2026-05-04T07:30") for b in bins), bins
    # the camera's threshold (default inference.threshold 0.5) decides what is stored; the tracker
    # got everything down to its low threshold (0.2) and still counted both people
    low = conn.execute("SELECT min(score) FROM detections").fetchone()[0]
    assert low >= 0.5
    conn.close()


# -- the truth formats and the matching -----------------------------------------------------------------


def test_truth_csv_and_json_read_the_same(tmp_path):
    c = tmp_path / "t.csv"
    c.write_text(
        "line,direction,frame,until,x,class,optional,note\n"
        "main,in,10,,100,car,,\n"
        "main,in,50,80,120,person,,stood on the line\n"
        "main,out,3,,,car,yes,on the line in frame 0\n"
    )
    t = load_truth(c)
    ev = t.lines["main"].events
    assert [(e.direction, e.frame, e.until, e.optional) for e in ev] == [
        ("in", 10, None, False),
        ("in", 50, 80, False),
        ("out", 3, None, True),
    ]
    j = tmp_path / "t.json"
    j.write_text(
        json.dumps(
            {
                "fps": 10,
                "lines": [
                    {
                        "name": "main",
                        "points": [[0, 0], [1, 0]],
                        "directions": ["in", "out"],
                        "crossings": [{"direction": "in", "time_s": 1.0}],
                    }
                ],
            }
        )
    )
    assert load_truth(j).lines["main"].events[0].frame == 10
    j.write_text(
        json.dumps(
            {
                "lines": [
                    {"name": "m", "directions": ["a", "b"], "crossings": [{"direction": "c", "frame": 1}]}
                ]
            }
        )
    )
    with pytest.raises(ConfigError, match="not one of"):
        load_truth(j)


def test_matching_windows_optional_and_tolerance():
    truth = [
        TruthEvent("in", 100, x=50, cls="car"),
        TruthEvent("in", 200, until=400, x=50, cls="person"),
        TruthEvent("in", 5, x=50, optional=True),
        TruthEvent("in", 600, x=900, cls="car"),
    ]
    counted = [
        Counted(110, 55, None, "car"),  # 10 frames late: matched
        Counted(390, 45, None, "person"),  # inside the standing span: matched
        Counted(7, 50, None, "car"),  # the optional one: neither missed nor extra
        Counted(600, 100, None, "truck"),  # right time, 800 px off: not that one
    ]
    rep = match_direction("l", "in", truth, counted, tol_frames=25, tol_px=150, groups={"car": ["car"]})
    assert (rep.truth, rep.optional, rep.matched, rep.matched_optional) == (3, 1, 2, 1)
    assert [e.frame for e in rep.missed] == [600]
    assert [c.frame for c in rep.extra] == [600]
    assert rep.counted_effective == 3 and rep.error == 0.0
    assert rep.per_class["car"] == {"truth": 2, "counted": 1, "matched_same_class": 1}


def test_a_daemon_does_not_end_by_itself_with_sensors_or_without_an_ended_file():
    from agent.config import load_config
    from agent.pipeline import Pipeline
    from agent.runner import _should_end

    pipe = Pipeline(load_config(None))  # not started: no camera has ended
    assert _should_end(pipe, None, has_sensors=True) is False  # sensors never end
    assert _should_end(pipe, None, has_sensors=False) is False  # nothing ended (e.g. a dead model)
    assert _should_end(pipe, False, has_sensors=False) is False


def _line(name: str, truth: list[tuple[float, str | None]], counted: list[tuple[float, int]]):
    """One line's matches: truth crossings (frame, object name) against counted (frame, track)."""
    return match_direction(
        name,
        "right",
        [TruthEvent("right", f, obj=o) for f, o in truth],
        [Counted(f, None, None, "p", tid) for f, tid in counted],
        tol_frames=5,
        tol_px=50,
    )


def test_identity_counts_fragments_and_id_switches():
    # line a: objects o1, o2 counted by tracks 1 and 2; line b: o1 by track 3 (its track broke),
    # and o2 by track 1 (track 1 jumped from o1 to o2): one fragment each for o1 and o2 ...
    a = _line("a", [(10, "o1"), (50, "o2")], [(10, 1), (50, 2)])
    b = _line("b", [(20, "o1"), (60, "o2")], [(20, 3), (60, 1)])
    ident = identity([a, b])
    assert ident is not None
    assert ident["objects"] == 2 and ident["tracks"] == 3
    assert ident["fragments"] == 2 and ident["split_objects"] == ["o1", "o2"]
    assert ident["id_switches"] == 1 and ident["switched_tracks"] == [1]
    # ... and a truth that names no objects measures nothing (not zero)
    assert identity([_line("c", [(10, None)], [(10, 1)])]) is None


def test_truth_object_names_are_read_from_json_and_csv(tmp_path):
    j = tmp_path / "t.json"
    j.write_text(
        json.dumps({"lines": [{"name": "a", "crossings": [{"direction": "r", "frame": 3, "object": "v7"}]}]})
    )
    assert load_truth(j).lines["a"].events[0].obj == "v7"
    c = tmp_path / "t.csv"
    c.write_text("line,direction,frame,object\na,r,3,v8\na,r,9,\n")
    ev = load_truth(c).lines["a"].events
    assert [e.obj for e in ev] == ["v8", None]
