"""Any external delegate library (``inference.delegate_path`` + ``delegate_options``): when set
it is used instead of the built-in accelerators (reported as ``"delegate"``)."""

from __future__ import annotations

from agent.errors import AcceleratorError
from agent.inference.delegates.base import (
    InterpreterInfo,
    LoadContext,
    build,
    delegate_hint,
    library_loadable,
    open_delegate,
)


class ExternalAccelerator:
    name = "delegate"

    def probe(self, ctx: LoadContext) -> AcceleratorError | None:
        lib = ctx.options.get("delegate_path")
        if not lib:
            return AcceleratorError(
                "delegate: inference.delegate_path is not set", "set it to the delegate library"
            )
        err = library_loadable(lib, plugin=True)
        if err is not None:
            return AcceleratorError(f"delegate: cannot load {lib}: {err}", delegate_hint("delegate", lib))
        return None

    def load(self, ctx: LoadContext) -> InterpreterInfo:
        lib = ctx.options.get("delegate_path")
        if not lib:
            raise AcceleratorError(
                "delegate: inference.delegate_path is not set", "set it to the delegate library"
            )
        dlg = open_delegate(
            ctx.load_delegate, lib, dict(ctx.options.get("delegate_options") or {}), "delegate"
        )
        return ctx.info(
            build(ctx.Interpreter, ctx.path, [dlg], ctx.num_threads, ctx.max_detections), self.name
        )


ACCELERATOR = ExternalAccelerator()
