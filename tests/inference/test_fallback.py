"""An accelerator lost while running: fall back down the order, keep detecting, re-probe, move back.

No Edge TPU or GPU is attached to the test machines, so the lost device is simulated by a
fault-injecting wrapper around a *real* LiteRT interpreter (the CPU model): its ``invoke()`` runs
the real model until the "Coral" is unplugged, then raises the error libedgetpu raises, and the
device cannot be opened again until it is plugged back. Everything else (the engine's state
machine, the CPU interpreter it falls back to, the detections, the pipeline, the store) is real.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from agent.config import InferenceConfig, parse_config
from agent.errors import AcceleratorError, ModelError
from agent.inference import engine as engine_mod
from agent.inference import load_engine
from agent.inference import loading as loading_mod
from agent.inference import runtime as runtime_mod
from agent.inference.runtime import InterpreterInfo

MODEL = "ssd_mobilenet_v1_coco_quant.tflite"


class Coral:
    """The simulated USB accelerator: plugged in, or not; optionally unplugs after N invokes."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.present = True
        self.fail_after = fail_after
        self.invokes = 0
        self.opens = 0


class FaultyInterpreter:
    """A real interpreter whose invoke() fails like a Coral that reset or was unplugged."""

    def __init__(self, real, coral: Coral) -> None:
        self._real = real
        self._coral = coral

    def invoke(self):
        c = self._coral
        c.invokes += 1
        if c.fail_after is not None and c.invokes > c.fail_after:
            c.present, c.fail_after = False, None
        if not c.present:
            raise RuntimeError("Failed to invoke: edgetpu: USB transfer error 2 (LIBUSB_ERROR_NO_DEVICE)")
        return self._real.invoke()

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def coral(monkeypatch):
    """Installs the simulated Coral as the Edge TPU the engine loader's make_interpreter finds."""
    dev = Coral()
    real_make = runtime_mod.make_interpreter

    def make(path, *, accelerator="auto", **kw):
        if accelerator in ("auto", "edgetpu"):
            if dev.present:
                dev.opens += 1
                info = real_make(path, accelerator="cpu", **kw)
                return InterpreterInfo(
                    FaultyInterpreter(info.interpreter, dev), "edgetpu", [], info.runtime, info.model_path
                )
            if accelerator == "edgetpu":
                raise AcceleratorError("edgetpu: no Edge TPU found (the USB device is gone)", "plug it in")
        return real_make(path, accelerator=accelerator, **kw)

    monkeypatch.setattr(loading_mod, "make_interpreter", make)
    return dev


def test_lost_accelerator_falls_back_to_cpu_keeps_detecting_and_moves_back(
    coral, model_path, models_cfg, traffic_frames
):
    cpu = load_engine(str(model_path(MODEL)), InferenceConfig(accelerator="cpu"), models_cfg)
    eng = load_engine(str(model_path(MODEL)), InferenceConfig(accelerator="auto"), models_cfg)
    assert eng.accelerator == "edgetpu" and eng.fallback is None
    eng.probe_initial_s = 60.0  # the probes below are brought forward by hand
    coral.fail_after = 5
    results, failed = [], []
    for i, img in enumerate(traffic_frames):
        try:
            dets, _, _ = eng.run(img)
        except ModelError as exc:
            failed.append(i)
            assert "LIBUSB_ERROR_NO_DEVICE" in exc.message
            continue
        results.append((i, dets))
    # frames 5 and 6 fail; the third failure in a row switches and runs frame 7 again on the CPU
    assert failed == [5, 6], failed
    assert eng.accelerator == "cpu"
    fb = eng.fallback
    assert fb["lost"] == "edgetpu" and "LIBUSB_ERROR_NO_DEVICE" in fb["reason"]
    assert fb["probes"] == 0 and fb["next_probe_in_s"] == 60.0
    # the detections are the real model's, before and after the switch
    for i, dets in results:
        ref = cpu.run(traffic_frames[i])[0]
        assert [(d.label, round(d.score, 3)) for d in dets] == [(d.label, round(d.score, 3)) for d in ref], i
    assert sum(len(d) for i, d in results if i > 6) > 0
    # still unplugged: the probe fails and backs off
    eng.next_probe_at = 0.0
    eng.run(traffic_frames[0])
    assert eng.accelerator == "cpu" and eng.fallback["probes"] == 1
    assert eng.fallback["next_probe_in_s"] == 120.0
    assert "gone" in eng.fallback["last_probe_error"]
    # plugged back in: the next probe moves the model back
    coral.present = True
    eng.next_probe_at = 0.0
    dets, _, _ = eng.run(traffic_frames[3])
    assert eng.accelerator == "edgetpu" and eng.fallback is None
    assert [(d.label, round(d.score, 3)) for d in dets] == [
        (d.label, round(d.score, 3)) for d in cpu.run(traffic_frames[3])[0]
    ]
    st = eng.accelerator_status()
    assert [(s["event"], s["from"], s["to"]) for s in st["switches"]] == [
        ("lost", "edgetpu", "cpu"),
        ("back", "cpu", "edgetpu"),
    ]


def test_camera_keeps_producing_detections_through_the_switch(
    coral, monkeypatch, tmp_path, media_path, model_path
):
    from agent.api.status import live_status
    from agent.pipeline import Pipeline

    monkeypatch.setattr(engine_mod, "PROBE_INITIAL_S", 0.5)
    coral.fail_after = 30
    cfg = parse_config(
        {
            "device": {"id": "tpu-unit", "site": "lab"},
            "storage": {"path": str(tmp_path / "agent.sqlite"), "stats_interval_s": 1.0},
            "models": {"dir": str(tmp_path / "models")},
            "inference": {
                "model": str(model_path(MODEL)),
                "num_threads": 1,
                "accelerator": "auto",
                "threshold": 0.3,
            },
            "api": {"enabled": False},
            "cameras": [
                {
                    "name": "road",
                    "source": str(media_path("traffic_frames.mp4")),
                    "loop": True,
                    "detect_fps": 15,
                }
            ],
        }
    )
    db = tmp_path / "agent.sqlite"

    def detections() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT COUNT(*) FROM detections").fetchone()[0]

    def model_st():
        return next(iter(p.status()["models"].values()))

    def wait(pred, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            time.sleep(0.05)
        return pred()

    p = Pipeline(cfg).start()
    try:
        assert model_st()["accelerator"] == "edgetpu"
        assert wait(lambda: model_st()["fallback"] is not None), model_st()
        st = p.status()
        assert st["accelerator"] == "cpu" and st["accelerator_fallback"]["lost"] == "edgetpu"
        assert st["cameras"]["road"]["state"] == "up"
        light = live_status(p)["lights"]["accelerator"]
        assert light["state"] == "warn" and "edgetpu lost" in light["why"], light
        birth = p.sync._birth(1)  # the birth a hub gets on the next connect
        assert birth["accelerator"] == "cpu" and birth["accelerator_fallback"]["lost"] == "edgetpu"
        p.writer.flush(5)
        n = detections()
        assert wait(lambda: p.writer.flush(5) or detections() >= n + 20), (n, detections())
        errors = st["inference"][next(iter(st["inference"]))]["errors"]
        assert errors == 2, errors  # the two frames before the switch, nothing after
        coral.present = True
        assert wait(lambda: model_st()["accelerator"] == "edgetpu", 30), model_st()
        n = detections()
        assert wait(lambda: p.writer.flush(5) or detections() >= n + 20)
    finally:
        p.stop()
    with sqlite3.connect(db) as c:
        accs = {r[0] for r in c.execute("SELECT accelerator FROM inference_stats")}
    assert "cpu" in accs and "edgetpu" in accs, accs
