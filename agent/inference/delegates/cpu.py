"""The CPU accelerator: LiteRT's default CPU path (XNNPACK). It loads any model built from
built-in ops; an Edge TPU-compiled model (``edgetpu-custom-op``) is refused with the reason the
Edge TPU was skipped."""

from __future__ import annotations

from agent.errors import AcceleratorError
from agent.inference.delegates.base import InterpreterInfo, LoadContext, build, has_edgetpu_op, log


class CpuAccelerator:
    name = "cpu"

    def probe(self, ctx: LoadContext) -> AcceleratorError | None:
        if not has_edgetpu_op(ctx.data):
            return None
        reasons = ctx.reasons
        return AcceleratorError(
            f"{ctx.path.name} is compiled for the Edge TPU (edgetpu-custom-op) and cannot run on the CPU; "
            + (f"no Edge TPU is usable ({reasons[0]})" if reasons else "no Edge TPU is usable"),
            "connect a Coral and install libedgetpu (apt install libedgetpu1-std), or use the CPU model "
            "(the catalog entry's plain file; models compiled with edgetpu_compiler keep a CPU original)",
        )

    def load(self, ctx: LoadContext) -> InterpreterInfo:
        err = self.probe(ctx)
        if err is not None:
            raise err
        interp = build(ctx.Interpreter, ctx.path, [], ctx.num_threads, ctx.max_detections)
        log.info(
            "inference: %s on the CPU (XNNPACK, %d threads)%s",
            ctx.path.name,
            ctx.num_threads,
            f"; skipped: {'; '.join(ctx.reasons)}" if ctx.reasons else "",
        )
        return ctx.info(interp, self.name)


ACCELERATOR = CpuAccelerator()
