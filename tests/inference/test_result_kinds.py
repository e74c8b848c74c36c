"""An open result type: a model family written as one throwaway file adds its own kind of result
(a stand-in for pose keypoints and for a segmentation's areas) and the engine, the results stage,
the store (``results``), the API (``/api/results``) and ``edge-agent tail`` carry it with no edit to
any other file. The plugin reaches a real ``edge-agent run`` the way an installer would give it:
the config's ``plugins`` list."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent import plugins
from agent.config import load_config, parse_config
from agent.errors import ConfigError
from agent.inference import adapters, load_engine
from tests.api.conftest import Agent, free_port, write_config
from tests.conftest import ROOT

PLUGIN = '''
"""Two stand-in families on the real SSD model: 'ssd-pose' (boxes, and per object a 'pose' record
of five keypoints: the box's corners and centre) and 'ssd-areas' (no boxes: one 'areas' record per
frame, the pixel area per class, as a segmentation model would give)."""
from collections import defaultdict

import numpy as np

from agent.inference.adapters import register_adapter
from agent.inference.adapters.ssd import SsdAdapter
from agent.types import Record


class SsdPose(SsdAdapter):
    family = "ssd-pose"

    def records(self, transform, threshold):
        arr = self.objects(threshold)
        out = []
        for (x1, y1, x2, y2), score in zip(arr.boxes.tolist(), arr.scores.tolist()):
            pts = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [(x1 + x2) / 2, (y1 + y2) / 2]])
            kp = transform.points_to_source(pts)
            out.append(Record("pose", {"score": round(score, 4), "keypoints": kp.round(1).tolist()}))
        return out


class SsdAreas(SsdAdapter):
    family = "ssd-areas"
    task = "areas"

    def records(self, transform, threshold):
        arr = self.objects(threshold)
        boxes = transform.to_source(arr.boxes) if len(arr.scores) else arr.boxes
        area = defaultdict(float)
        for (x1, y1, x2, y2), cid in zip(boxes.tolist(), arr.class_ids.tolist()):
            area[str(cid)] += (x2 - x1) * (y2 - y1)
        return [Record("areas", {"px_by_class": {k: round(v) for k, v in area.items()}})]


register_adapter(SsdPose)
register_adapter(SsdAreas)
'''


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "plugins" / "stand_in_families.py"
    path.parent.mkdir()
    path.write_text(PLUGIN)
    yield path
    for fam in ("ssd-pose", "ssd-areas"):
        adapters._REGISTERED.pop(fam, None)
    for p in list(plugins._LOADED):
        if p == path.resolve():
            sys.modules.pop(plugins._LOADED.pop(p).__name__, None)


def _config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(body)
    return cfg


def test_the_plugins_list_makes_its_family_a_valid_setting(tmp_path, plugin_file):
    cfg = _config(tmp_path, 'plugins = ["plugins/stand_in_families.py"]\n[inference]\nfamily = "ssd-pose"\n')
    assert load_config(cfg).inference.family == "ssd-pose"
    assert str(plugin_file.resolve()) in plugins.loaded()
    load_config(cfg)  # a reload imports nothing twice
    assert plugins.loaded().count(str(plugin_file.resolve())) == 1


@pytest.mark.parametrize(
    ("plugins_line", "plugin_text", "error"),
    [
        ('plugins = ["missing.py"]', None, "plugins[0] (missing.py): "),
        (
            'plugins = ["broken.py"]',
            "import numpy\n\nraise RuntimeError('no licence key')\n",
            "failed at line 3",
        ),
        ('plugins = ["broken.py"]', "def f(:\n", "failed at line 1: SyntaxError"),
        ('plugins = ["notes.txt"]', None, "not a Python file"),
        ('plugins = "one.py"', None, "must be a list of paths"),
    ],
)
def test_a_bad_plugin_is_a_config_error_naming_it(tmp_path, plugins_line, plugin_text, error):
    if plugin_text is not None:
        (tmp_path / "broken.py").write_text(plugin_text)
    cfg = _config(tmp_path, plugins_line + "\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert error in str(exc.value)
    assert str(cfg) in str(exc.value) and exc.value.hint


def _cfg(**inference):
    return parse_config({"device": {"id": "t1"}, "inference": {"accelerator": "cpu", **inference}}).inference


def test_records_of_a_kind_the_engine_does_not_know(tmp_path, plugin_file, model_path, models_cfg, image):
    load_config(_config(tmp_path, f'plugins = ["{plugin_file}"]\n'))
    ssd = str(model_path("ssd_mobilenet_v1_coco_quant.tflite"))
    img = image("grace_hopper.bmp")
    pose = load_engine(ssd, _cfg(family="ssd-pose"), models_cfg).run_all(img, threshold=0.3)
    assert pose.detections and len(pose.records) == len(pose.detections)
    for det, rec in zip(pose.detections, pose.records):  # the transform maps points as it maps boxes
        assert rec.kind == "pose"
        x1, y1, x2, y2 = det.box
        assert rec.data["keypoints"][0] == pytest.approx([x1, y1], abs=0.1)
        assert rec.data["keypoints"][2] == pytest.approx([x2, y2], abs=0.1)
    areas_engine = load_engine(ssd, _cfg(family="ssd-areas"), models_cfg)
    assert areas_engine.task == "areas"
    areas = areas_engine.run_all(img, threshold=0.3)
    assert areas.detections == [] and areas.classifications == []
    (rec,) = areas.records
    person = next(d for d in pose.detections if d.class_id == 0)
    w, h = person.box[2] - person.box[0], person.box[3] - person.box[1]
    assert rec.kind == "areas" and rec.data["px_by_class"]["0"] >= round(w * h) - 1


def test_the_snapshot_draws_a_records_keypoints(tmp_path, plugin_file, model_path, models_cfg, image):
    import cv2
    import numpy as np

    from agent.api.snapshot import SnapshotRenderer
    from agent.config import CameraConfig
    from agent.types import Frame, InferenceResult, Record

    load_config(_config(tmp_path, f'plugins = ["{plugin_file}"]\n'))
    img = image("grace_hopper.bmp")
    out = load_engine(
        str(model_path("ssd_mobilenet_v1_coco_quant.tflite")), _cfg(family="ssd-pose"), models_cfg
    ).run_all(img, threshold=0.3)
    cam = CameraConfig(name="road", source="x.mp4")

    def render(records, index):
        res = InferenceResult(Frame("road", index, 0.0, 0.0, img), "m", out.detections, records=records)
        jpeg = SnapshotRenderer().render("road", res, cam, blur="off", blur_labels=[], quality=95).jpeg
        return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)

    plain = render([], 0)
    bad = [Record("pose", {"keypoints": [[float("nan"), 3], "x", [1]]}), Record("pose", {"keypoints": 5})]
    drawn = render(out.records + bad, 1)  # what cannot be drawn is left out, never an error
    x, y = (round(v) for v in out.records[0].data["keypoints"][4])  # the centre of the first object
    assert np.abs(drawn[y - 1 : y + 2, x - 1 : x + 2] - plain[y - 1 : y + 2, x - 1 : x + 2]).mean() > 40


def test_a_plugin_family_runs_end_to_end_in_the_agent(tmp_path, plugin_file, media_path, model_path):
    port = free_port()
    ssd = model_path("ssd_mobilenet_v1_coco_quant.tflite")
    cfg = write_config(
        tmp_path,
        port,
        body=f"""
[[cameras]]
name = "road"
source = "{media_path("traffic_frames.mp4")}"
loop = true
realtime = false
detect_fps = 30
""",
    )
    text = cfg.read_text().replace(
        'accelerator = "cpu"', f'accelerator = "cpu"\nmodel = "{ssd}"\nfamily = "ssd-pose"'
    )
    cfg.write_text('plugins = ["plugins/stand_in_families.py"]\n' + text)
    agent = Agent(cfg, port, tmp_path)
    try:
        agent.wait_up()
        got = agent.wait_for(lambda: agent.json("/api/results?kind=pose&camera=road&limit=20")["items"])
        assert {r["kind"] for r in got} == {"pose"} and all(len(r["data"]["keypoints"]) == 5 for r in got)
        later = agent.json(f"/api/results?after_id={got[-1]['id']}&limit=5")["items"]
        assert all(r["id"] > got[-1]["id"] for r in later)
        assert agent.get("/api/results?kind=../x")[0] == 422
        assert agent.json("/api/status")["plugins"] == [str(plugin_file.resolve())]
        assert agent.stop() == 0
    finally:
        agent.stop()
    db = tmp_path / "agent.sqlite"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        frames = conn.execute(
            "SELECT d.frame, count(DISTINCT d.id), (SELECT count(*) FROM results r WHERE r.frame = d.frame)"
            " FROM detections d GROUP BY d.frame"
        ).fetchall()
        box = conn.execute("SELECT frame, x1, y1, x2, y2 FROM detections ORDER BY id LIMIT 1").fetchone()
        keypoints = [
            json.loads(d)["keypoints"]
            for (d,) in conn.execute("SELECT data FROM results WHERE frame = ?", (box[0],))
        ]
    # one pose record per stored detection on each frame (a looping clip repeats frame numbers)
    assert frames and all(poses == dets for _, dets, poses in frames)
    assert any(
        k[0] == pytest.approx(box[1:3], abs=0.1) and k[2] == pytest.approx(box[3:5], abs=0.1)
        for k in keypoints
    )
    tail = subprocess.run(
        [sys.executable, "-m", "agent.cli", "tail", "--config", str(cfg), "--offline", "--json"]
        + ["--no-detections", "--no-readings", "--duration", "0", "-n", "3"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tail.returncode == 0, tail.stderr
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(rows) == 3 and {(r["kind"], r["result_kind"]) for r in rows} == {("result", "pose")}
