"""Model-family adapters (one file per family) and the family detection from a model's tensors.

Adding a family: write ``adapters/<family>.py`` with an :class:`~agent.inference.adapters.base.Adapter`
subclass; in-tree, list it in :func:`_families` (and in :func:`detect_family` if it can be
recognised); out-of-tree, call :func:`register_adapter` (a ``matches(interpreter)`` classmethod on
the class makes ``family = "auto"`` find it) before the config is loaded.
"""

from __future__ import annotations

from typing import Any

from agent.errors import ModelError
from agent.inference.adapters.base import Adapter, DetectionArrays

_REGISTERED: dict[str, type[Adapter]] = {}


def register_adapter(cls: type[Adapter]) -> None:
    """Add an out-of-tree family adapter under ``cls.family``, selectable as ``inference.family``.

    When the class has a ``matches(interpreter) -> bool`` classmethod, ``family = "auto"`` tries
    it before the in-tree families."""
    _REGISTERED[cls.family] = cls


def family_names() -> list[str]:
    """The values ``inference.family`` accepts (``auto``, the in-tree and the registered families)."""
    return ["auto", *FAMILIES, *(f for f in _REGISTERED if f not in FAMILIES)]


def _families() -> dict[str, type[Adapter]]:
    from agent.inference.adapters.blazeface import BlazeFaceAdapter
    from agent.inference.adapters.classify import ClassifierAdapter
    from agent.inference.adapters.recurrent import RecurrentSsdAdapter
    from agent.inference.adapters.ssd import SsdAdapter
    from agent.inference.adapters.yolo import YoloAdapter

    return {
        "ssd": SsdAdapter,
        "yolo": YoloAdapter,
        "classifier": ClassifierAdapter,
        "recurrent": RecurrentSsdAdapter,
        "blazeface": BlazeFaceAdapter,
        **_REGISTERED,
    }


FAMILIES = ("ssd", "yolo", "classifier", "recurrent", "blazeface")


def detect_family(interpreter: Any) -> str:
    """Guess a model's family from its tensors.

    Args:
        interpreter: an allocated interpreter.

    Returns:
        ``"recurrent"`` (SSD postprocess + LSTM state inputs), ``"ssd"`` (postprocess outputs),
        ``"blazeface"`` (regressors + classificators over an anchor grid), ``"yolo"`` (one ``[1, 4+C(+1), N]`` or ``[1, N, 4+C(+1)]`` output) or ``"classifier"``
        (one ``[1, C]`` output).

    Raises:
        ModelError: none of these layouts.
    """
    from agent.inference.adapters.blazeface import blazeface_outputs
    from agent.inference.adapters.recurrent import state_pairs
    from agent.inference.adapters.ssd import is_ssd
    from agent.inference.adapters.yolo import yolo_layout

    for fam, cls in _REGISTERED.items():
        matches = getattr(cls, "matches", None)
        if matches is not None and matches(interpreter):
            return fam
    if is_ssd(interpreter):
        return "recurrent" if state_pairs(interpreter) else "ssd"
    if blazeface_outputs(interpreter) is not None:
        return "blazeface"
    outs = interpreter.get_output_details()
    if len(outs) == 1 and yolo_layout(outs[0]) is not None:
        return "yolo"
    if len(outs) == 1 and len(outs[0]["shape"]) == 2 and outs[0]["shape"][1] > 1:
        return "classifier"
    shapes = ", ".join(f"{d['name'] or '?'} {list(d['shape'])}" for d in outs)
    raise ModelError(
        f"cannot tell the model family from its outputs ({shapes})",
        "set inference.family (ssd, yolo, classifier, recurrent) or the catalog entry's family",
    )


def make_adapter(family: str, interpreter: Any, **kw: Any) -> Adapter:
    """Build the adapter of ``family`` for an interpreter (``ModelError`` when it does not fit)."""
    fams = _families()
    if family not in fams:
        raise ModelError(
            f"unknown model family {family!r}", f"use one of: {', '.join(family_names()[1:])} (or auto)"
        )
    try:
        return fams[family](interpreter, **kw)
    except ModelError as exc:
        raise ModelError(
            f"the model does not fit family {family!r}: {exc.message}",
            'use inference.family = "auto" or the family the model belongs to',
        ) from None


__all__ = [
    "FAMILIES",
    "Adapter",
    "DetectionArrays",
    "detect_family",
    "family_names",
    "make_adapter",
    "register_adapter",
]
