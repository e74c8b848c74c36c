"""The Coral Edge TPU accelerator (``libedgetpu`` as a TFLite delegate), for the model's
``_edgetpu.tflite`` variant (or the model itself when it is Edge TPU-compiled)."""

from __future__ import annotations

import platform

from agent.errors import AcceleratorError
from agent.inference.delegates.base import (
    InterpreterInfo,
    LoadContext,
    build,
    delegate_hint,
    library_loadable,
    log,
    open_delegate,
    read_model,
)

EDGETPU_LIBS = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def edgetpu_library() -> str:
    """The Edge TPU runtime library name on this OS (``libedgetpu.so.1`` on Linux)."""
    return EDGETPU_LIBS.get(platform.system(), EDGETPU_LIBS["Linux"])


class EdgeTpuAccelerator:
    name = "edgetpu"

    def probe(self, ctx: LoadContext) -> AcceleratorError | None:
        lib_err = library_loadable(edgetpu_library())
        if lib_err is not None:
            return AcceleratorError(
                f"edgetpu: cannot load {edgetpu_library()}: {lib_err}",
                delegate_hint("edgetpu", edgetpu_library()),
            )
        if ctx.tpu_path is None:
            return AcceleratorError(
                f"edgetpu: no Edge TPU variant of {ctx.path.name} is known",
                "compile the model with edgetpu_compiler and set edgetpu_variant in its catalog "
                'entry (or load the _edgetpu.tflite file), or use accelerator "auto"/"cpu"',
            )
        return None

    def load(self, ctx: LoadContext) -> InterpreterInfo:
        err = self.probe(ctx)
        if err is not None:
            raise err
        tpu_path = ctx.tpu_path
        assert tpu_path is not None
        if tpu_path != ctx.path:
            read_model(tpu_path)
        device = ctx.options.get("edgetpu_device")
        dlg = open_delegate(
            ctx.load_delegate, edgetpu_library(), {"device": device} if device else {}, "edgetpu"
        )
        interp = build(ctx.Interpreter, tpu_path, [dlg], ctx.num_threads, ctx.max_detections)
        log.info("inference: %s on the Edge TPU (%s)", tpu_path.name, device or "first found")
        return ctx.info(interp, self.name, tpu_path)


ACCELERATOR = EdgeTpuAccelerator()
