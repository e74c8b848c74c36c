"""Fixtures: detector output over the real clips, computed once per test session and cached."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import pytest

from agent.types import Detection

DATA = Path(__file__).resolve().parent.parent / "data"


def _detect_clip(path: Path, model: Path, threshold: float) -> list[list[Detection]]:
    from agent.config import InferenceConfig, ModelsConfig
    from agent.inference import load_engine

    eng = load_engine(str(model), InferenceConfig(threshold=threshold), ModelsConfig())
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        dets, _, _ = eng.run(img, state_key=path.name)
        out.append(list(dets))
    cap.release()
    return out


@pytest.fixture(scope="session")
def clip_detections(media_path, model_path, tmp_path_factory):
    """clip_detections(name) -> per-frame detections (threshold 0.3, for ByteTrack's low pass)."""
    cache: dict[str, list[list[Detection]]] = {}
    # EDGE_AGENT_TEST_DETS_CACHE keeps the detector's output between runs (a developer's loop on a
    # busy machine); by default each session runs the real model once per clip.
    keep = os.environ.get("EDGE_AGENT_TEST_DETS_CACHE")
    root = Path(keep) if keep else tmp_path_factory.mktemp("dets")
    root.mkdir(parents=True, exist_ok=True)

    def get(name: str) -> list[list[Detection]]:
        if name not in cache:
            f = root / (name + ".json")
            if f.exists():
                raw = json.loads(f.read_text())
                cache[name] = [[Detection(d[0], d[1], d[2], tuple(d[3])) for d in fr] for fr in raw]
            else:
                cache[name] = _detect_clip(
                    media_path(name), model_path("ssd_mobilenet_v1_coco_quant.tflite"), 0.3
                )
                f.write_text(
                    json.dumps(
                        [[[d.label, d.class_id, d.score, list(d.box)] for d in fr] for fr in cache[name]]
                    )
                )
        return cache[name]

    return get


def load_truth(name: str) -> dict:
    return json.loads((DATA / name).read_text())
