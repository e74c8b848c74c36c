"""The CLI through the real entry point: models list/pull/verify, detect and classify JSON lines, errors."""

from __future__ import annotations

import json

import cv2


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_models_pull_verify_list(cli, tmp_path, mirror):
    d = str(tmp_path / "m")
    r = cli(
        "models",
        "pull",
        "ssd_mobilenet_v1_coco",
        "traffic_frames",
        "--mirror",
        str(mirror),
        "--models-dir",
        d,
    )
    assert r.returncode == 0, r.stderr
    assert "ok: ssd_mobilenet_v1_coco" in r.stdout and "sha256 verified" in r.stdout
    r = cli("models", "verify", "--models-dir", d)
    assert r.returncode == 0 and "ssd_mobilenet_v1_coco" in r.stdout and "missing" in r.stdout
    r = cli("models", "list", "--json", "--models-dir", d)
    rows = {o["name"]: o for o in _lines(r.stdout)}
    assert rows["ssd_mobilenet_v1_coco"]["installed"] and not rows["mobilenet_v2_imagenet"]["installed"]
    assert rows["traffic_frames"]["kind"] == "media"


def test_models_pull_tampered_mirror_fails_cleanly(cli, tmp_path, mirror):
    m = tmp_path / "mirror" / "models"
    m.mkdir(parents=True)
    data = bytearray((mirror / "models" / "mobilenet_v2_1.0_224_quant.tflite").read_bytes())
    data[-10] ^= 1
    (m / "mobilenet_v2_1.0_224_quant.tflite").write_bytes(bytes(data))
    r = cli(
        "models",
        "pull",
        "mobilenet_v2_imagenet",
        "--mirror",
        str(tmp_path / "mirror"),
        "--models-dir",
        str(tmp_path / "d"),
    )
    assert r.returncode == 3
    assert (
        "error: mobilenet_v2_imagenet: sha256 mismatch" in r.stderr
        and "fix:" in r.stderr
        and "Traceback" not in r.stderr
    )
    assert not (tmp_path / "d" / "mobilenet_v2_1.0_224_quant.tflite").exists()


def test_detect_json_image(cli, tmp_path, media_path):
    out = tmp_path / "annotated.jpg"
    r = cli(
        "detect",
        str(media_path("grace_hopper.bmp")),
        "--model",
        "ssd_mobilenet_v1_coco",
        "--json",
        "--threshold",
        "0.4",
        "--out",
        str(out),
        "--models-dir",
        str(tmp_path / "m"),
    )
    assert r.returncode == 0, r.stderr
    dets = _lines(r.stdout)
    assert {tuple(sorted(d)) for d in dets} == {("box", "class_id", "frame", "label", "score")}
    assert dets[0]["label"] == "person" and dets[0]["class_id"] == 0 and dets[0]["frame"] == 0
    assert abs(dets[0]["score"] - 0.72) < 0.05 and all(d["score"] >= 0.4 for d in dets)
    x1, y1, x2, y2 = dets[0]["box"]
    assert x1 < 52 and y1 < 60 and x2 > 460 and y2 > 540  # source pixels of the 512x600 image
    assert "tie" in {d["label"] for d in dets}
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (600, 512, 3)
    assert "on cpu" in r.stderr  # the summary goes to stderr with --json


def test_detect_json_video_with_path_model(cli, tmp_path, media_path, model_path):
    r = cli(
        "detect",
        str(media_path("traffic_frames.mp4")),
        "--model",
        str(model_path("ssd_mobilenet_v1_coco_quant.tflite")),
        "--json",
        "--models-dir",
        str(tmp_path / "m"),
    )
    assert r.returncode == 0, r.stderr
    dets = _lines(r.stdout)
    assert {d["frame"] for d in dets if d["label"] == "car"} == set(range(20))
    assert all(
        0 <= d["box"][0] <= d["box"][2] <= 960 and 0 <= d["box"][1] <= d["box"][3] <= 540 for d in dets
    )


def test_detect_folder(cli, tmp_path, media_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in ("cat.bmp", "grace_hopper.bmp"):
        (folder / n).write_bytes(media_path(n).read_bytes())
    r = cli(
        "detect",
        str(folder),
        "--json",
        "--threshold",
        "0.6",
        "--models-dir",
        str(tmp_path / "m"),
        "--out",
        str(tmp_path / "annotated"),
    )
    assert r.returncode == 0, r.stderr
    dets = _lines(r.stdout)
    assert {(d["file"], d["label"]) for d in dets} >= {("cat.bmp", "cat"), ("grace_hopper.bmp", "person")}
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["cat.bmp", "grace_hopper.bmp"]


def test_classify_json(cli, tmp_path, media_path):
    r = cli(
        "classify",
        str(media_path("cat.bmp")),
        "--model",
        "mobilenet_v2_imagenet",
        "--json",
        "--top-k",
        "3",
        "--models-dir",
        str(tmp_path / "m"),
    )
    assert r.returncode == 0, r.stderr
    rows = _lines(r.stdout)
    assert len(rows) == 3 and rows[0]["label"] == "Egyptian cat" and rows[0]["class_id"] == 286
    assert set(rows[0]) == {"frame", "label", "class_id", "score"}
    assert [x["score"] for x in rows] == sorted((x["score"] for x in rows), reverse=True)


def test_cli_errors_are_messages(cli, tmp_path, media_path, model_path):
    r = cli("detect", str(tmp_path / "nope.jpg"), "--models-dir", str(tmp_path / "m"))
    assert (
        r.returncode != 0
        and "error:" in r.stderr
        and "does not exist" in r.stderr
        and "Traceback" not in r.stderr
    )
    r = cli("detect", str(media_path("cat.bmp")), "--model", str(model_path("model_invoking_error.tflite")))
    assert (
        r.returncode == 3
        and "fake-op-double" in r.stderr
        and "fix:" in r.stderr
        and "Traceback" not in r.stderr
    )
    r = cli(
        "detect",
        str(media_path("cat.bmp")),
        "--model",
        str(model_path("yolov8n_full_integer_quant_edgetpu.tflite")),
    )
    assert (
        r.returncode == 3
        and "Edge TPU" in r.stderr
        and "libedgetpu" in r.stderr
        and "Traceback" not in r.stderr
    )
    r = cli(
        "classify",
        str(media_path("cat.bmp")),
        "--model",
        "ssd_mobilenet_v1_coco",
        "--models-dir",
        str(tmp_path / "m"),
    )
    assert r.returncode != 0 and "is a detector" in r.stderr


def test_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, agent.inference, agent.inference.cli, agent.inference.catalog; "
        "print(sorted(m for m in ('cv2', 'ai_edge_litert', 'numpy') if m in sys.modules))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "'cv2'" not in p.stdout and "'ai_edge_litert'" not in p.stdout
