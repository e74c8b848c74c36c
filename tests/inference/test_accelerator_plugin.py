"""An accelerator is one module: a throwaway one written to tmp_path, registered, chosen by name
from the config and used by a real engine on the real default model; no other file is edited."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.inference import delegates, load_engine

PLUGIN = '''
from agent.errors import AcceleratorError
from agent.inference.delegates import register_accelerator
from agent.inference.delegates.base import build


class CpuCopy:
    """LiteRT's CPU under another name; "present" says whether probe() lets it run."""

    name = "cpu-copy"

    def __init__(self):
        self.present = True
        self.loads = 0

    def probe(self, ctx):
        if self.present:
            return None
        return AcceleratorError("cpu-copy: the board is not attached", "attach the board")

    def load(self, ctx):
        err = self.probe(ctx)
        if err is not None:
            raise err
        self.loads += 1
        interp = build(ctx.Interpreter, ctx.path, [], ctx.num_threads, ctx.max_detections)
        return ctx.info(interp, self.name)


ACCELERATOR = CpuCopy()
register_accelerator(ACCELERATOR, order=("cpu-copy", "cpu"))
'''


@pytest.fixture
def cpu_copy(tmp_path):
    """Import the throwaway accelerator module from tmp_path (as a plugin package would be)."""
    path = tmp_path / "cpu_copy_accel.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("cpu_copy_accel", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cpu_copy_accel"] = mod
    spec.loader.exec_module(mod)
    yield mod.ACCELERATOR
    sys.modules.pop("cpu_copy_accel", None)
    delegates.ACCELERATORS.pop("cpu-copy", None)
    delegates.ORDER.pop("cpu-copy", None)


def _cfg(accelerator: str):
    return parse_config({"device": {"id": "t1"}, "inference": {"accelerator": accelerator}}).inference


def test_unknown_accelerator_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError) as exc:
        _cfg("cpu-copy")
    assert "inference.accelerator: 'cpu-copy' is not one of 'auto', 'cpu', 'edgetpu' or 'gpu'" in str(
        exc.value
    )


def test_a_registered_accelerator_runs_the_default_model(cpu_copy, models_cfg, image):
    cfg = _cfg("cpu-copy")
    eng = load_engine("ssd_mobilenet_v1_coco", cfg, models_cfg)
    assert (eng.accelerator, eng.accelerator_reasons, cpu_copy.loads) == ("cpu-copy", [], 1)
    dets, _, _ = eng.run(image("grace_hopper.bmp"), threshold=0.3)
    person = max((d for d in dets if d.label == "person"), key=lambda d: d.score)
    assert person.score == pytest.approx(0.72, abs=0.05)  # the same model, the same answer as on "cpu"


def test_its_fallback_order_is_data(cpu_copy, models_cfg):
    cpu_copy.present = False
    eng = load_engine("ssd_mobilenet_v1_coco", _cfg("cpu-copy"), models_cfg)
    assert eng.accelerator == "cpu" and cpu_copy.loads == 0
    assert eng.accelerator_reasons == ["cpu-copy: the board is not attached"]
