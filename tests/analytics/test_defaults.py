"""Model-aware defaults: the catalog's score calibration fills what a config leaves unset, a model
given by path gets the safe defaults, and the demo counts its real clip honestly (per pass)."""

from __future__ import annotations

import pytest

from agent.analytics.config import SAFE_CALIBRATION, CameraAnalytics, TrackerConfig
from agent.analytics.runner import AnalyticsRunner
from agent.config import load_config
from agent.errors import ModelError
from agent.inference.catalog import load_catalog
from agent.types import Frame, InferenceResult


def test_catalog_models_carry_a_calibration_and_config_wins():
    cal = load_catalog().get("ssd_mobilenet_v1_coco").tracker
    assert set(cal) == set(SAFE_CALIBRATION)
    t = TrackerConfig().resolved(cal)
    assert (t.high_threshold, t.low_threshold, t.new_track_threshold) == (
        cal["high_threshold"],
        cal["low_threshold"],
        cal["new_track_threshold"],
    )
    t = TrackerConfig(high_threshold=0.6).resolved(cal)
    assert t.high_threshold == 0.6 and t.low_threshold == cal["low_threshold"]
    assert TrackerConfig().resolved(None).model_dump(include=set(SAFE_CALIBRATION)) == SAFE_CALIBRATION
    # a low threshold above the high one is clamped (the low pass is below the high one)
    assert TrackerConfig(high_threshold=0.15).resolved(cal).low_threshold == 0.15


def test_bad_catalog_calibration_is_refused(tmp_path):
    src = load_catalog().path.read_text()
    bad = tmp_path / "catalog.toml"
    bad.write_text(src.replace("high_threshold = 0.35", "high_threshold = 3.5"))
    from agent.config import ModelsConfig

    with pytest.raises(ModelError, match="tracker"):
        load_catalog(ModelsConfig(catalog=bad))


def test_example_config_does_not_contradict_itself():
    cfg = load_config(None)
    import tomllib

    from agent.config import example_config, parse_config

    ex = parse_config(tomllib.loads(example_config()))
    for cam in ex.cameras:
        t = cam.analytics.tracker
        # score settings come from the model (none is fixed in the example), and the camera's
        # threshold only decides what is stored: no threshold there hides detections from the tracker
        assert t.high_threshold is None and t.low_threshold is None and t.new_track_threshold is None
    assert cfg.inference.max_detections >= 100


def test_demo_clip_counts_each_pass_and_nothing_across_the_seam(clip_detections):
    from agent.config import _DEMO_CAMERAS

    frames = clip_detections("traffic_frames.mp4")
    assert len(frames) == 20
    cal = load_catalog().get("ssd_mobilenet_v1_coco").tracker
    cfg = CameraAnalytics.model_validate(_DEMO_CAMERAS[0]["analytics"])
    r = AnalyticsRunner("demo", cfg, None, frame_size=(960, 540), calibration=cal)
    import numpy as np

    img = np.zeros((540, 960, 3), np.uint8)  # the clip's size: a frame of another size is a resolution change
    n = 0
    for epoch in (1, 2, 3):
        for i, dets in enumerate(frames):
            f = Frame("demo", i, 1e9 + n / 30, n / 30, img, pos_s=i / 30, epoch=epoch)
            r.process(InferenceResult(f, "m", list(dets)))
            n += 1
    got = r.state()["since_start"].get("main", {})
    # each pass: the white car and the pickup leave the frame's middle to the left (frames ~12 and
    # ~15, checked on the frames); the dark car stays left of the line
    assert {d: sum(v.values()) for d, v in got.items()} == {"leftward": 6}
    assert r.epochs == 2
    assert not any(d.label == "train" for fr in frames for d in fr if d.label in r.track_classes)
