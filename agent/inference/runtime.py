"""Making a TFLite interpreter: the runtime (LiteRT or tflite-runtime) and the accelerator.

``make_interpreter`` walks the accelerators of :data:`agent.inference.delegates.ORDER` for the
``inference.accelerator`` setting (each accelerator is one module under ``delegates/``). It
returns a plain interpreter (so every adapter works with any delegate, as in pycoral), the
accelerator actually in use, and the reasons other accelerators were skipped, so that ``auto``
never crashes on a unit without an Edge TPU or GPU: it falls back to the CPU (XNNPACK) and says why.

Every failure a person can meet (missing file, corrupt file, unresolved custom op, a delegate
library that is not installed) becomes a :class:`~agent.errors.ModelError` or
:class:`~agent.errors.AcceleratorError` with a hint, never a raw runtime traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.errors import AcceleratorError, ModelError
from agent.inference.delegates import ACCELERATORS, ORDER
from agent.inference.delegates.base import (
    EDGETPU_CUSTOM_OP,
    InterpreterInfo,
    LoadContext,
    has_edgetpu_op,
    native_stderr_to_log,
    read_model,
)
from agent.inference.delegates.edgetpu import EDGETPU_LIBS, edgetpu_library
from agent.inference.delegates.gpu import GPU_LIBS, default_gpu_libraries

log = logging.getLogger(__name__)


def load_runtime(runtime: str = "auto") -> tuple[Any, Any, str]:
    """Import the interpreter class and ``load_delegate`` of a runtime.

    Args:
        runtime: ``"auto"`` (LiteRT if installed, else tflite-runtime), ``"litert"`` or
            ``"tflite-runtime"``.

    Returns:
        ``(Interpreter, load_delegate, name)``.

    Raises:
        ModelError: the requested runtime is not installed.
    """
    if runtime not in ("auto", "litert", "tflite-runtime"):
        raise ModelError(f"unknown inference runtime {runtime!r}", "use auto, litert or tflite-runtime")
    if runtime in ("auto", "litert"):
        try:
            from ai_edge_litert.interpreter import Interpreter, load_delegate

            return Interpreter, load_delegate, "litert"
        except ImportError:
            if runtime == "litert":
                raise ModelError(
                    "the LiteRT runtime (ai-edge-litert) is not installed",
                    'pip install ai-edge-litert, or set inference.runtime = "tflite-runtime"',
                ) from None
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "tflite-runtime"
    except ImportError:
        if runtime == "tflite-runtime":
            raise ModelError(
                'inference.runtime is "tflite-runtime" but the tflite_runtime package is not installed',
                "pip install 'edge-agent[tflite-runtime]' (or the tflite-runtime wheel for this Python), "
                'or set inference.runtime = "auto" to use LiteRT',
            ) from None
        raise ModelError(
            "no TFLite runtime is installed (neither ai-edge-litert nor tflite-runtime)",
            "pip install ai-edge-litert",
        ) from None


def accelerator_summary(accelerator: str, reasons: list[str]) -> str:
    """A short account of where a model runs, for a status light or one log line:
    ``cpu (no Edge TPU, no GPU delegate)``. The full reasons (dlopen errors) are the details."""
    missing = []
    text = [r.lower() for r in reasons]
    if any(r.startswith("edgetpu") or "edge tpu" in r for r in text):
        missing.append("no Edge TPU")
    if any(r.startswith("gpu") for r in text):
        missing.append("no GPU delegate")
    return f"{accelerator} ({', '.join(missing)})" if missing else accelerator


def make_interpreter(
    model_path: str | Path,
    runtime: str = "auto",
    accelerator: str = "auto",
    num_threads: int = 2,
    edgetpu_device: str | None = None,
    gpu_delegate_path: str | None = None,
    delegate_path: str | None = None,
    delegate_options: dict[str, str] | None = None,
    edgetpu_model_path: str | Path | None = None,
    max_detections: int | None = None,
) -> InterpreterInfo:
    """Build an allocated interpreter for a model on the best (or requested) accelerator.

    Args:
        model_path: the CPU ``.tflite`` file (may itself be an Edge TPU model).
        runtime: ``"auto"``, ``"litert"`` or ``"tflite-runtime"``.
        accelerator: a key of :data:`~agent.inference.delegates.ORDER`: ``"auto"`` (edgetpu,
            then gpu, then cpu), ``"cpu"`` (XNNPACK), ``"edgetpu"``, ``"gpu"`` or a registered
            one. The last accelerator of the order that cannot be used is the error.
        num_threads: CPU threads (XNNPACK and the CPU part of delegated graphs).
        edgetpu_device: Edge TPU to open, e.g. ``"usb"``, ``"usb:0"``, ``"pci:0"`` (default: first).
        gpu_delegate_path: the GPU delegate library (default: the usual names, from the library path).
        delegate_path: any external delegate; when set it is used instead of the choices above.
        delegate_options: options passed to ``delegate_path``.
        edgetpu_model_path: the ``_edgetpu.tflite`` variant, used when the Edge TPU is active.
        max_detections: detections per frame an SSD postprocess op may report (its baked-in cap,
            often 10, is raised to this; ``None`` leaves the model as it is).

    Returns:
        :class:`InterpreterInfo` (interpreter, accelerator, reasons, runtime, model_path).

    Raises:
        ModelError: missing, corrupt or unrunnable model, or runtime not installed.
        AcceleratorError: the requested accelerator (or an Edge TPU model's TPU) is unavailable.
    """
    if accelerator not in ORDER:
        raise ModelError(f"unknown accelerator {accelerator!r}", f"use one of: {', '.join(ORDER)}")
    path = Path(model_path)
    data = read_model(path)
    Interpreter, load_delegate, rt_name = load_runtime(runtime)
    ctx = LoadContext(
        Interpreter,
        load_delegate,
        rt_name,
        path,
        data,
        Path(edgetpu_model_path) if edgetpu_model_path else (path if has_edgetpu_op(data) else None),
        num_threads,
        max_detections,
        {
            "edgetpu_device": edgetpu_device,
            "gpu_delegate_path": gpu_delegate_path,
            "delegate_path": delegate_path,
            "delegate_options": dict(delegate_options or {}),
        },
    )
    return _first_that_loads(("delegate",) if delegate_path else ORDER[accelerator], ctx)


def _first_that_loads(order: tuple[str, ...], ctx: LoadContext) -> InterpreterInfo:
    """Walk the accelerator order: the first that loads; why each before it could not is kept in
    ``ctx.reasons``; the last one's error is raised."""
    for i, name in enumerate(order):
        try:
            return ACCELERATORS[name].load(ctx)
        except AcceleratorError as exc:
            if i == len(order) - 1:
                raise
            ctx.reasons.append(exc.message)
            log.debug("inference: skipping %s: %s", name, exc.message)
    raise AssertionError("unreachable: an order is never empty")


__all__ = [
    "EDGETPU_CUSTOM_OP",
    "EDGETPU_LIBS",
    "GPU_LIBS",
    "InterpreterInfo",
    "accelerator_summary",
    "default_gpu_libraries",
    "edgetpu_library",
    "has_edgetpu_op",
    "load_runtime",
    "make_interpreter",
    "native_stderr_to_log",
]
