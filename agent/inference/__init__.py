"""Inference: TFLite models on the CPU (XNNPACK), an Edge TPU or a GPU delegate.

The pipeline uses :func:`load_engine` and :class:`Engine`; see ``runtime`` (interpreter and
delegates), ``adapters`` (model families), ``preprocess``, ``labels`` and ``catalog``.
Heavy modules (LiteRT, OpenCV) are imported on first use, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from agent.inference.engine import Engine

__all__ = ["Engine", "load_engine"]


def load_engine(model: str, inference_cfg: Any, models_cfg: Any, *, family: str | None = None) -> Engine:
    """Load a model for inference (see :func:`agent.inference.loading.load_engine`)."""
    from agent.inference.loading import load_engine as _load

    return _load(model, inference_cfg, models_cfg, family=family)


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from agent.inference.engine import Engine

        return Engine
    raise AttributeError(name)
