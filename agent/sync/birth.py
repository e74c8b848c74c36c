"""The birth message's model fields, from the live status of the loaded models."""

from __future__ import annotations

from typing import Any


def birth_models(live: dict[str, Any], default_model: str) -> dict[str, Any]:
    """The birth's model fields from the pipeline's status: the default ``model``, its active
    ``accelerator`` (the first loaded model's when the default is not loaded; None with no model), and
    per loaded model its accelerator and the reasons the better ones were skipped (fallbacks); models
    that failed to load are in ``model_errors``."""
    loaded = live.get("models") or {}
    models = {
        name: {
            "accelerator": m.get("accelerator"),
            "fallback_reasons": list(m.get("reasons") or []),
            "family": m.get("family"),
        }
        for name, m in sorted(loaded.items())
        if isinstance(m, dict)
    }
    main = models.get(default_model) or next(iter(models.values()), None)
    return {
        "model": default_model,
        "accelerator": main["accelerator"] if main else None,
        "models": models,
        "model_errors": {str(k): str(v) for k, v in (live.get("model_errors") or {}).items()},
    }
