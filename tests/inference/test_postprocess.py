"""The SSD postprocess cap: Google's SSD v1 export reports at most 10 detections per frame unless
raised (the model file on disk is never changed)."""

from __future__ import annotations

import hashlib

import cv2

from agent.config import InferenceConfig, ModelsConfig
from agent.inference import load_engine
from agent.inference.postprocess import raise_max_detections


def test_cap_is_raised_in_memory_only(model_path):
    p = model_path("ssd_mobilenet_v1_coco_quant.tflite")
    data = p.read_bytes()
    before = hashlib.sha256(data).hexdigest()
    out, old = raise_max_detections(data, 100)
    assert old == 10 and len(out) == len(data) and out != data
    assert raise_max_detections(out, 100) == (out, None)  # already enough: unchanged
    assert hashlib.sha256(p.read_bytes()).hexdigest() == before
    cls = model_path("mobilenet_v2_1.0_224_quant.tflite").read_bytes()
    assert raise_max_detections(cls, 100) == (cls, None)  # no postprocess op: untouched


def test_busy_road_gets_more_than_ten_detections(model_path, media_path):
    eng = load_engine(
        str(model_path("ssd_mobilenet_v1_coco_quant.tflite")), InferenceConfig(threshold=0.2), ModelsConfig()
    )
    cap = cv2.VideoCapture(str(media_path("4ku_traffic.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 57)
    ok, img = cap.read()
    cap.release()
    assert ok
    dets = eng.detect(img)
    assert len(dets) > 10
    # the car at the bottom right that the 10 slots lost to far-away clutter (frame 57)
    assert any(d.label == "car" and 760 < (d.box[0] + d.box[2]) / 2 < 900 and d.box[3] > 560 for d in dets)
    few = load_engine(
        str(model_path("ssd_mobilenet_v1_coco_quant.tflite")),
        InferenceConfig(threshold=0.2, max_detections=10),
        ModelsConfig(),
    )
    assert len(few.detect(img)) <= 10
