"""Accelerators, one module each (``cpu``, ``edgetpu``, ``gpu``, ``external``), and the fallback
order, which is data: :data:`ORDER` maps each ``inference.accelerator`` setting to the
accelerators tried, in order; the last one's failure is the error, earlier ones become reasons.

Adding an accelerator: write ``delegates/<name>.py`` with an object that has ``name``,
``probe(ctx)`` and ``load(ctx)`` (see :mod:`agent.inference.delegates.base`), then list it in
:data:`ACCELERATORS` (in-tree) or call :func:`register_accelerator` (out-of-tree, before the
config is loaded, so that ``inference.accelerator = "<name>"`` validates).
"""

from __future__ import annotations

from agent.inference.delegates import cpu, edgetpu, external, gpu
from agent.inference.delegates.base import Accelerator, InterpreterInfo, LoadContext

ACCELERATORS: dict[str, Accelerator] = {
    a.name: a for a in (edgetpu.ACCELERATOR, gpu.ACCELERATOR, cpu.ACCELERATOR, external.ACCELERATOR)
}

# inference.accelerator -> the accelerators tried, in order (the engine's mid-run fallback walks
# the "auto" order after the lost one).
ORDER: dict[str, tuple[str, ...]] = {
    "auto": ("edgetpu", "gpu", "cpu"),
    "cpu": ("cpu",),
    "edgetpu": ("edgetpu",),
    "gpu": ("gpu",),
}


def register_accelerator(acc: Accelerator, order: tuple[str, ...] | None = None) -> None:
    """Add an out-of-tree accelerator, selectable as ``inference.accelerator = acc.name``.

    Args:
        acc: the accelerator object.
        order: what that setting tries (default: only ``acc``; e.g. ``(acc.name, "cpu")`` to
            fall back to the CPU).
    """
    ACCELERATORS[acc.name] = acc
    ORDER[acc.name] = order or (acc.name,)


def accelerator_names() -> list[str]:
    """The values ``inference.accelerator`` accepts."""
    return list(ORDER)


__all__ = [
    "ACCELERATORS",
    "ORDER",
    "Accelerator",
    "InterpreterInfo",
    "LoadContext",
    "accelerator_names",
    "register_accelerator",
]
