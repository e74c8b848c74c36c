"""The birth's model fields come from the pipeline's status: the default model's accelerator and,
per loaded model, its accelerator and fallback reasons."""

from __future__ import annotations

from agent.sync.service import birth_models


def test_birth_names_the_active_accelerator_and_fallbacks():
    live = {
        "models": {
            "yolo": {
                "family": "yolo",
                "accelerator": "cpu",
                "reasons": ["edgetpu: no device"],
                "path": "/m/y",
            },
            "ssd": {"family": "ssd", "accelerator": "edgetpu", "reasons": [], "path": "/m/s"},
        },
        "model_errors": {"broken": "sha256 mismatch"},
    }
    b = birth_models(live, "ssd")
    assert b["model"] == "ssd" and b["accelerator"] == "edgetpu"
    assert b["models"]["yolo"] == {
        "accelerator": "cpu",
        "fallback_reasons": ["edgetpu: no device"],
        "family": "yolo",
    }
    assert b["model_errors"] == {"broken": "sha256 mismatch"}
    # the default model failed to load: the first loaded model's accelerator
    assert birth_models(live, "broken")["accelerator"] == "edgetpu"  # the first loaded model (by name)
    # nothing loaded yet (the birth at connect, before the models)
    assert birth_models({}, "ssd") == {"model": "ssd", "accelerator": None, "models": {}, "model_errors": {}}
