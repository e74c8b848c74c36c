"""Static privacy masks on the motorway clip: every image the agent can produce has the masked area
fully masked (pixel statistics), and detections inside a mask are dropped and counted."""

from __future__ import annotations

import json
import time
import urllib.request

import cv2
import numpy as np
import pytest

from agent.config import parse_config
from agent.pipeline import Pipeline
from agent.privacy.config import PrivacyMask
from agent.privacy.masks import MaskSet, pipeline_masks, polygon_pixels
from tests.api.conftest import free_port
from tests.conftest import mirror_dir, run_cli

# the far carriageway of 4ku_traffic.mp4 (traffic coming toward the camera), normalized
ROAD = [[0.52, 0.36], [0.58, 0.36], [1.0, 0.78], [1.0, 1.0], [0.57, 1.0]]
FIELD = [[0.0, 0.28], [0.22, 0.28], [0.22, 0.42], [0.0, 0.42]]


def _inside(size: tuple[int, int], points, erode: int = 0) -> np.ndarray:
    w, h = size
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(polygon_pixels(points, "auto", size)).astype(np.int32)], 1)
    if erode:
        m = cv2.erode(m, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return m.astype(bool)


def _frame(media_path, index: int = 100) -> np.ndarray:
    cap = cv2.VideoCapture(str(media_path("4ku_traffic.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, img = cap.read()
    cap.release()
    assert ok
    return img


def _camera(clip: str) -> dict:
    return {
        "name": "m6",
        "source": clip,
        "realtime": False,
        "detect_fps": 5,
        "threshold": 0.4,
        "masks": [
            {"name": "far-carriageway", "points": ROAD, "mode": "black"},
            {"name": "field", "points": FIELD, "mode": "blur", "drop_overlap": 1.0},
        ],
    }


@pytest.fixture(scope="module")
def masked_pipeline(tmp_path_factory, media_path):
    tmp = tmp_path_factory.mktemp("masks")
    cfg = parse_config(
        {
            "storage": {"path": str(tmp / "agent.sqlite"), "commit_interval_s": 0.1},
            "models": {"dir": str(tmp / "models"), "mirror": str(mirror_dir())},
            "inference": {"num_threads": 1, "accelerator": "cpu"},
            "mqtt": {"enabled": False},
            "api": {"port": free_port()},
            "privacy": {"blur": "off"},
            "cameras": [_camera(str(media_path("4ku_traffic.mp4")))],
        }
    )
    pipe = Pipeline(cfg).start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ms = pipeline_masks(pipe).get("m6")
            if ms is not None and ms.frames >= 25 and "m6" in pipe.results.latest:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the masked camera did not process 25 frames in time")
        pipe.base = f"http://127.0.0.1:{pipe.api.port}"
        pipe.tmp = tmp
        yield pipe
    finally:
        pipe.stop()


def test_the_frame_everything_sees_is_masked(masked_pipeline, media_path):
    res = masked_pipeline.results.latest["m6"]
    img = res.frame.image
    size = (img.shape[1], img.shape[0])
    assert not img[_inside(size, ROAD)].any()  # black: exactly zero, before inference saw it
    # blur: no detail left in the field, but the rest of the frame is the clip's own
    orig = _frame(media_path, res.frame.index)
    field = _inside(size, FIELD, erode=2)
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.CV_64F)  # noqa: E731
    assert lap(img)[field].var() < 0.02 * lap(orig)[field].var()
    outside = ~(_inside(size, ROAD) | _inside(size, FIELD))
    assert np.abs(img.astype(int) - orig.astype(int))[outside].mean() < 1.0


def test_snapshot_and_status_page_image_have_the_area_masked(masked_pipeline, media_path):
    with urllib.request.urlopen(masked_pipeline.base + "/api/snapshot/m6.jpg", timeout=10) as r:
        snap = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
    size = (snap.shape[1], snap.shape[0])
    road = _inside(size, ROAD, erode=3)
    vals = snap[road].max(axis=1)
    orig = _frame(media_path, masked_pipeline.results.latest["m6"].frame.index)
    print(f"snapshot inside the black mask: mean {vals.mean():.2f}, 99th pct {np.percentile(vals, 99):.0f}")
    # only JPEG noise and the outlines of boxes that are mostly outside the mask remain
    assert vals.mean() < 2.0 and np.percentile(vals, 99) <= 24
    assert orig[road].max(axis=1).mean() > 60  # there was a road there
    small = urllib.request.urlopen(masked_pipeline.base + "/api/snapshot/m6.jpg?max_width=640", timeout=10)
    s = cv2.imdecode(np.frombuffer(small.read(), np.uint8), cv2.IMREAD_COLOR)
    assert s.shape[1] == 640 and s[_inside((640, s.shape[0]), ROAD, erode=3)].max(axis=1).mean() < 2.0


def test_detections_in_the_mask_are_dropped_and_counted(ssd, media_path):
    """On the unmasked frame the detector finds cars on the far carriageway; the mask's filter drops
    exactly those mostly inside it, and on the masked frame nothing is found there at all."""
    img = _frame(media_path, 450)
    dets = ssd.run(img, threshold=0.4)[0]
    ms = MaskSet("m6", [PrivacyMask(name="far-carriageway", points=ROAD)])
    inside = [d for d in dets if ms.masked_fraction(d.box, (1280, 720))["far-carriageway"] > 0.5]
    assert len(inside) >= 4
    kept = ms.filter(dets, (1280, 720))
    assert len(kept) == len(dets) - len(inside) and ms.dropped == len(inside)
    assert ms.dropped_by_mask == {"far-carriageway": len(inside)}
    masked = ms.apply(img.copy())
    after = ssd.run(masked, threshold=0.4)[0]
    assert not [d for d in after if ms.masked_fraction(d.box, (1280, 720))["far-carriageway"] > 0.5]


def test_nothing_mostly_inside_a_mask_is_stored_or_reported(masked_pipeline):
    pipe = masked_pipeline
    ms = pipeline_masks(pipe)["m6"]
    assert ms.frames >= 25 and ms.dropped_by_mask["field"] == 0  # field: drop_overlap = 1 keeps all
    pipe.writer.flush(10)
    from agent.store.db import connect

    conn = connect(pipe.cfg.storage.path, readonly=True)
    try:
        rows = conn.execute("SELECT x1, y1, x2, y2 FROM detections WHERE camera = 'm6'").fetchall()
    finally:
        conn.close()
    assert rows, "no detections stored at all"
    check = MaskSet("m6", [PrivacyMask(name="far-carriageway", points=ROAD)])
    fracs = [check.masked_fraction(r, (1280, 720))["far-carriageway"] for r in rows]
    assert max(fracs) <= 0.5  # nothing mostly inside the mask was stored
    dropped_before = ms.dropped_by_mask["far-carriageway"]  # the pipeline runs on: read it first
    with urllib.request.urlopen(pipe.base + "/api/privacy", timeout=10) as r:
        rep = json.loads(r.read())
    cam = rep["images"]["cameras"]["m6"]
    assert [m["name"] for m in cam["masks"]] == ["far-carriageway", "field"]
    assert cam["live"]["frames_masked"] >= 25
    assert cam["live"]["detections_dropped"] >= dropped_before >= 0


def test_detect_out_with_the_camera_masks(tmp_path, media_path):
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), _frame(media_path, 450))
    cfg = tmp_path / "agent.toml"
    cam = _camera(str(media_path("4ku_traffic.mp4")))
    masks = "\n".join(
        f'[[cameras.masks]]\nname = "{m["name"]}"\npoints = {json.dumps(m["points"])}\nmode = "{m["mode"]}"'
        for m in cam["masks"]
    )
    cfg.write_text(
        f'[models]\ndir = "{tmp_path / "models"}"\nmirror = "{mirror_dir()}"\n'
        f'[inference]\naccelerator = "cpu"\nnum_threads = 1\n'
        f'[[cameras]]\nname = "m6"\nsource = "{cam["source"]}"\n{masks}\n'
    )
    out = tmp_path / "out.png"
    r = run_cli(
        "detect", str(frame), "--config", str(cfg), "--camera", "m6", "-t", "0.4", "--json", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(out))
    road = _inside((1280, 720), ROAD, erode=1)
    zero = ~img[road].any(axis=1)
    assert zero.mean() > 0.995  # lossless: only box outlines of detections mostly outside remain
    check = MaskSet("m6", [PrivacyMask(name="r", points=ROAD)])
    for line in r.stdout.splitlines():
        d = json.loads(line)
        assert check.masked_fraction(d["box"], (1280, 720))["r"] <= 0.5
    # without --camera the same frame shows the road and its cars
    r2 = run_cli("detect", str(frame), "--config", str(cfg), "-t", "0.4", "--json")
    inside = [json.loads(x) for x in r2.stdout.splitlines()]
    assert any(check.masked_fraction(d["box"], (1280, 720))["r"] > 0.5 for d in inside)


def test_bad_masks_are_config_errors(cli, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[[cameras]]\nname = "a"\nsource = "0"\n[[cameras.masks]]\nname = "w"\npoints = [[0, 0], [1, 1]]\n'
    )
    r = cli("config", "check", str(cfg))
    assert r.returncode == 2 and "at least 3 points" in r.stderr and "Traceback" not in r.stderr


def test_the_inference_stage_masks_each_frame_and_follows_a_reload(ssd, media_path):
    """The one spot: InferenceWorker.process masks the frame before the model; a camera whose masks
    change on reload (SIGHUP replaces ``cam.cfg``) gets the new masks from its next frame on; a frame
    that cannot be masked is dropped, never passed on unmasked."""
    import queue

    from agent.config import CameraConfig
    from agent.sources.camera import CameraSource
    from agent.stages import InferenceWorker
    from agent.types import Frame

    cfg = CameraConfig(name="m6", source="x.mp4", masks=[{"name": "road", "points": ROAD}])
    cam = CameraSource(cfg)
    out: queue.Queue = queue.Queue()
    w = InferenceWorker(ssd, [cam], out)
    img = _frame(media_path, 450)
    w.process(Frame("m6", 450, time.time(), time.monotonic(), img.copy()))
    res = out.get_nowait()
    assert not res.frame.image[_inside((1280, 720), ROAD)].any()
    first = w.masks["m6"]
    w.process(Frame("m6", 451, time.time(), time.monotonic(), img.copy()))
    assert w.masks["m6"] is first and first.frames == 2  # kept across frames, counting
    cam.cfg = cfg.model_copy(update={"masks": [PrivacyMask(name="field", points=FIELD)]})
    w.process(Frame("m6", 452, time.time(), time.monotonic(), img.copy()))
    out.get_nowait()  # frame 451
    res = out.get_nowait()  # frame 452
    assert w.masks["m6"] is not first and [m.name for m in w.masks["m6"].masks] == ["field"]
    assert res.frame.image[_inside((1280, 720), ROAD)].any()  # the road mask is gone
    bad = Frame("m6", 453, time.time(), time.monotonic(), np.zeros((0, 0, 3), np.uint8))
    w.process(bad)
    assert out.empty() and w.errors == 1
