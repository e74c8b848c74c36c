"""The GPU accelerator: a TFLite GPU delegate built as an external delegate
(``inference.gpu_delegate_path``, else the usual library names from the library path)."""

from __future__ import annotations

import platform

from agent.errors import AcceleratorError, ModelError
from agent.inference.delegates.base import (
    InterpreterInfo,
    LoadContext,
    build,
    delegate_hint,
    library_loadable,
    log,
    open_delegate,
)

GPU_LIBS = {
    "Linux": ["libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so"],
    "Darwin": ["libtensorflowlite_gpu_delegate.dylib", "libmetal_delegate.dylib"],
    "Windows": ["tensorflowlite_gpu_delegate.dll"],
}


def default_gpu_libraries() -> list[str]:
    """Default names of the TFLite GPU delegate library on this OS."""
    return GPU_LIBS.get(platform.system(), GPU_LIBS["Linux"])


class GpuAccelerator:
    name = "gpu"

    def _libs(self, ctx: LoadContext) -> list[str]:
        path = ctx.options.get("gpu_delegate_path")
        return [path] if path else default_gpu_libraries()

    def _error(self, ctx: LoadContext, errors: list[str]) -> AcceleratorError:
        libs = self._libs(ctx)
        if not ctx.options.get("gpu_delegate_path") and errors and all("cannot load" in e for e in errors):
            msg = f"gpu: no GPU delegate library found (tried {', '.join(libs)})"
        else:
            msg = "; ".join(errors) if errors else "gpu: no delegate library"
        return AcceleratorError(msg, delegate_hint("gpu", libs[0]))

    def probe(self, ctx: LoadContext) -> AcceleratorError | None:
        errors = [
            f"gpu: cannot load {lib}: {e}"
            for lib in self._libs(ctx)
            if (e := library_loadable(lib, plugin=True))
        ]
        return self._error(ctx, errors) if len(errors) == len(self._libs(ctx)) else None

    def load(self, ctx: LoadContext) -> InterpreterInfo:
        errors: list[str] = []
        for lib in self._libs(ctx):
            try:
                dlg = open_delegate(ctx.load_delegate, lib, {}, "gpu")
            except AcceleratorError as exc:
                errors.append(exc.message)
                continue
            try:
                interp = build(ctx.Interpreter, ctx.path, [dlg], ctx.num_threads, ctx.max_detections)
            except ModelError as exc:
                errors.append(f"gpu: {exc.message}")
                continue
            log.info("inference: %s on the GPU delegate (%s)", ctx.path.name, lib)
            return ctx.info(interp, self.name)
        raise self._error(ctx, errors)


ACCELERATOR = GpuAccelerator()
