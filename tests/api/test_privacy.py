"""Snapshots blur people unless told otherwise; the pipeline's own frame is never touched."""

from __future__ import annotations

import shutil
import time
import urllib.request

import cv2
import numpy as np
import pytest

from agent.config import parse_config
from agent.pipeline import Pipeline
from tests.api.conftest import free_port
from tests.conftest import mirror_dir


def _sharpness(img: np.ndarray, box) -> float:
    """Detail (variance of the Laplacian) where a person's head is: the middle of the box's upper
    half, clear of the outlines and labels drawn on the snapshot."""
    x1, y1, x2, y2 = (int(v) for v in box)
    w, h = x2 - x1, y2 - y1
    roi = cv2.cvtColor(
        img[y1 + h // 10 : y1 + h // 2, x1 + 3 * w // 10 : x2 - 3 * w // 10], cv2.COLOR_BGR2GRAY
    )
    return float(cv2.Laplacian(roi, cv2.CV_64F).var())


def _largest(boxes):
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


@pytest.fixture(scope="module")
def person_pipeline(tmp_path_factory, media_path):
    tmp = tmp_path_factory.mktemp("privacy")
    folder = tmp / "frames"
    folder.mkdir()
    shutil.copy(media_path("grace_hopper.bmp"), folder / "grace_hopper.bmp")
    port = free_port()
    cfg = parse_config(
        {
            "storage": {"path": str(tmp / "agent.sqlite")},
            "models": {"dir": str(tmp / "models"), "mirror": str(mirror_dir())},
            "inference": {"num_threads": 1, "accelerator": "cpu"},
            "mqtt": {"enabled": False},
            "api": {"port": port},
            "cameras": [{"name": "door", "source": str(folder), "loop": True, "detect_fps": 2}],
        }
    )
    pipe = Pipeline(cfg).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            res = pipe.results.latest.get("door") if pipe.results else None
            if res is not None and any(d.label == "person" for d in res.detections):
                break
            time.sleep(0.2)
        else:
            pytest.fail("no person detected in grace_hopper.bmp")
        pipe.base = f"http://127.0.0.1:{pipe.api.port}"
        yield pipe
    finally:
        pipe.stop()


def _snapshot(pipe) -> tuple[np.ndarray, str, object]:
    res = pipe.results.latest["door"]
    with urllib.request.urlopen(pipe.base + "/api/snapshot/door.jpg", timeout=10) as r:
        img = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        return img, r.headers["x-privacy"], res


def test_people_blurred_by_default_and_not_when_off(person_pipeline, media_path):
    pipe = person_pipeline
    original = cv2.imread(str(media_path("grace_hopper.bmp")))
    assert pipe.cfg.privacy.blur == "people"  # the default
    blurred, how, res = _snapshot(pipe)
    people = [d.box for d in res.detections if d.label == "person"]
    box = _largest(people)
    assert how == f"people blurred: {len(people)}"
    pipe.cfg.privacy.blur = "off"
    try:
        clear, how_off, _ = _snapshot(pipe)
    finally:
        pipe.cfg.privacy.blur = "people"
    assert how_off == "off"
    s_orig, s_clear, s_blur = _sharpness(original, box), _sharpness(clear, box), _sharpness(blurred, box)
    print(
        f"Laplacian variance in the person box: original {s_orig:.0f}, off {s_clear:.0f}, people {s_blur:.0f}"
    )
    assert s_clear > 0.5 * s_orig  # 'off' shows the person (JPEG softens a little)
    assert s_blur < 0.1 * s_clear  # 'people' leaves no detail
    # the blur stays in the box: pixels far from it are unchanged apart from JPEG noise
    x1, y1, x2, y2 = (int(v) for v in box)
    mask = np.ones(original.shape[:2], bool)
    pad = int(0.15 * max(x2 - x1, y2 - y1))
    mask[max(0, y1 - pad - 30) : y2 + pad, max(0, x1 - pad) : x2 + pad] = False
    mask[-40:, :] = False  # the caption
    if mask.sum() > 1000:
        diff = np.abs(blurred.astype(int) - clear.astype(int))[mask]
        assert diff.mean() < 4
    # the pipeline's own frame was not blurred by the request
    assert _sharpness(res.frame.image, box) > 0.9 * s_orig


def test_faces_mode_blurs_the_face_found_by_the_face_detector(person_pipeline):
    pipe = person_pipeline
    pipe.cfg.privacy.blur = "faces"
    try:
        img, how, res = _snapshot(pipe)
    finally:
        pipe.cfg.privacy.blur = "people"
    assert how.startswith("faces blurred: 1,"), how  # BlazeFace, on device
    face = (173, 137, 358, 354)  # the reference face box of grace_hopper.bmp (PROVENANCE.md)
    assert _sharpness(img, face) < 0.1 * _sharpness(res.frame.image, face)
    # below the face (the uniform, the tie) the snapshot keeps its detail
    x1, y1, x2, y2 = 150, 420, 420, 560
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(img) > 0.5 * lap(res.frame.image)


def test_snapshots_can_be_switched_off(person_pipeline):
    pipe = person_pipeline
    pipe.cfg.privacy.snapshots = False
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(pipe.base + "/api/snapshot/door.jpg", timeout=10)
        assert e.value.code == 403
    finally:
        pipe.cfg.privacy.snapshots = True
