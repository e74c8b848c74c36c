"""Fixtures for the inference tests: models installed once per session from the mirror, cached engines."""

from __future__ import annotations

import cv2
import pytest

from agent.config import InferenceConfig, ModelsConfig
from agent.inference import load_engine


@pytest.fixture(scope="session")
def models_cfg(tmp_path_factory, mirror) -> ModelsConfig:
    """A ModelsConfig whose install dir is a fresh session folder, pulling from the mirror."""
    return ModelsConfig(dir=tmp_path_factory.mktemp("models"), mirror=str(mirror), auto_pull=True)


@pytest.fixture(scope="session")
def engine(models_cfg):
    """engine(model, **inference_cfg) -> a cached Engine (interpreters are expensive to build)."""
    cache: dict = {}

    def get(model: str, **kw):
        key = (str(model), repr(sorted(kw.items())))
        if key not in cache:
            cache[key] = load_engine(str(model), InferenceConfig(**kw), models_cfg)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def image(media_path):
    def get(name: str):
        img = cv2.imread(str(media_path(name)), cv2.IMREAD_COLOR)
        assert img is not None, name
        return img

    return get


@pytest.fixture(scope="session")
def traffic_frames(media_path):
    cap = cv2.VideoCapture(str(media_path("traffic_frames.mp4")))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 20
    return frames
