"""A model family is one module: a throwaway adapter written to tmp_path, registered, found by
``family = "auto"`` from a real model's tensors and run by a real engine; no other file is edited."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.inference import adapters, load_engine

PLUGIN = '''
from agent.inference.adapters import register_adapter
from agent.inference.adapters.ssd import SsdAdapter, is_ssd


class SsdCopy(SsdAdapter):
    """The SSD decoding under another family name, counting what it decodes."""

    family = "ssd-copy"
    decoded = 0

    @classmethod
    def matches(cls, interpreter):
        return is_ssd(interpreter)

    def objects(self, threshold):
        type(self).decoded += 1
        return super().objects(threshold)


register_adapter(SsdCopy)
'''


@pytest.fixture
def ssd_copy(tmp_path):
    path = tmp_path / "ssd_copy_family.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("ssd_copy_family", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ssd_copy_family"] = mod
    spec.loader.exec_module(mod)
    yield mod.SsdCopy
    sys.modules.pop("ssd_copy_family", None)
    adapters._REGISTERED.pop("ssd-copy", None)


def _cfg(**inference):
    return parse_config({"device": {"id": "t1"}, "inference": inference}).inference


def test_unknown_family_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError) as exc:
        _cfg(family="ssd-copy")
    assert "inference.family: 'ssd-copy' is not one of 'auto', 'ssd', 'yolo'" in str(exc.value)


def test_a_registered_family_is_found_from_the_tensors_and_runs(ssd_copy, model_path, models_cfg, image):
    cfg = _cfg(family="ssd-copy", accelerator="cpu")  # now a valid setting
    assert cfg.family == "ssd-copy"
    eng = load_engine(str(model_path("ssd_mobilenet_v1_coco_quant.tflite")), _cfg(), models_cfg)
    assert eng.family == "ssd-copy" and isinstance(eng.adapter, ssd_copy)
    dets, _, _ = eng.run(image("grace_hopper.bmp"), threshold=0.3)
    assert ssd_copy.decoded == 1
    person = max((d for d in dets if d.class_id == 0), key=lambda d: d.score)
    assert person.score == pytest.approx(0.72, abs=0.05)
