"""Fixtures for the privacy tests: models installed once from the mirror, the face finder, the SSD."""

from __future__ import annotations

import cv2
import pytest

from agent.config import parse_config
from agent.inference import load_engine
from agent.privacy.faces import FaceFinder


@pytest.fixture(scope="session")
def agent_cfg(tmp_path_factory, mirror):
    """A config whose models come from the mirror into a session folder (CPU, one thread)."""
    return parse_config(
        {
            "models": {"dir": str(tmp_path_factory.mktemp("models")), "mirror": str(mirror)},
            "inference": {"accelerator": "cpu", "num_threads": 1},
        }
    )


@pytest.fixture(scope="session")
def faces(agent_cfg) -> FaceFinder:
    f = FaceFinder.from_config(agent_cfg)
    assert f.load(), f.why_not
    return f


@pytest.fixture(scope="session")
def ssd(agent_cfg):
    return load_engine("ssd_mobilenet_v1_coco", agent_cfg.inference, agent_cfg.models)


@pytest.fixture(scope="session")
def image(media_path):
    def get(name: str):
        img = cv2.imread(str(media_path(name)), cv2.IMREAD_COLOR)
        assert img is not None, name
        return img

    return get
