"""Making a TFLite interpreter: the runtime (LiteRT or tflite-runtime) and the accelerator (delegate).

``make_interpreter`` is the one place that knows about delegates. It returns a plain interpreter
(so every adapter works with any delegate, as in pycoral), the accelerator actually in use, and
the reasons other accelerators were skipped, so that ``auto`` never crashes on a unit without an
Edge TPU or GPU: it falls back to the CPU (XNNPACK) and says why.

Every failure a person can meet (missing file, corrupt file, unresolved custom op, a delegate
library that is not installed) becomes a :class:`~agent.errors.ModelError` or
:class:`~agent.errors.AcceleratorError` with a hint, never a raw runtime traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import AcceleratorError, ModelError

log = logging.getLogger(__name__)

EDGETPU_LIBS = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
GPU_LIBS = {
    "Linux": ["libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so"],
    "Darwin": ["libtensorflowlite_gpu_delegate.dylib", "libmetal_delegate.dylib"],
    "Windows": ["tensorflowlite_gpu_delegate.dll"],
}
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


@dataclass
class InterpreterInfo:
    """What :func:`make_interpreter` built.

    Attributes:
        interpreter: the allocated interpreter (``allocate_tensors`` already called).
        accelerator: ``"cpu"``, ``"edgetpu"``, ``"gpu"`` or ``"delegate"`` (an external one).
        reasons: why each other accelerator was skipped, in the order tried.
        runtime: ``"litert"`` or ``"tflite-runtime"``.
        model_path: the file actually loaded (the Edge TPU variant when one was chosen).
    """

    interpreter: Any
    accelerator: str
    reasons: list[str] = field(default_factory=list)
    runtime: str = "litert"
    model_path: Path | None = None


def edgetpu_library() -> str:
    """The Edge TPU runtime library name on this OS (``libedgetpu.so.1`` on Linux)."""
    return EDGETPU_LIBS.get(platform.system(), EDGETPU_LIBS["Linux"])


def default_gpu_libraries() -> list[str]:
    """Default names of the TFLite GPU delegate library on this OS."""
    return GPU_LIBS.get(platform.system(), GPU_LIBS["Linux"])


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


def _library_loadable(lib: str, *, plugin: bool = False) -> str | None:
    """``None`` when the shared library can be opened, else the loader's message.

    Checking with ctypes first avoids the runtime's noisy ``Delegate.__del__`` warnings on failure.
    With ``plugin``, the library must also export the external-delegate entry points.
    """
    try:
        handle = ctypes.CDLL(lib)
    except OSError as exc:
        return str(exc)
    if plugin and not hasattr(handle, "tflite_plugin_create_delegate"):
        return "not a TFLite delegate (it does not export tflite_plugin_create_delegate)"
    return None


def _load_delegate(load_delegate: Any, lib: str, options: dict[str, str], what: str) -> Any:
    err = _library_loadable(lib, plugin=True)
    if err is not None:
        raise AcceleratorError(f"{what}: cannot load {lib}: {err}", _delegate_hint(what, lib))
    try:
        with native_stderr_to_log():
            return load_delegate(lib, options or {})
    except (ValueError, RuntimeError, OSError, AttributeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AcceleratorError(
            f"{what}: {lib} loaded but no delegate was created ({msg})", _delegate_hint(what, lib)
        ) from None


def _delegate_hint(what: str, lib: str) -> str:
    if what == "edgetpu":
        return (
            "plug in the Coral (USB: check `lsusb` for 1a6e/18d1; PCIe: /dev/apex_0) and install the Edge TPU "
            'runtime (apt install libedgetpu1-std), or set inference.accelerator = "cpu" (or "auto" to fall back)'
        )
    if what == "gpu":
        return (
            "install a TFLite GPU delegate built as an external delegate (it must export "
            "tflite_plugin_create_delegate; the plain bazel libtensorflowlite_gpu_delegate.so does not) and set "
            'inference.gpu_delegate_path to it, or set inference.accelerator = "cpu" (or "auto" to fall back)'
        )
    return f"check that {lib} exists and matches this runtime version, or remove inference.delegate_path"


def _read_model(path: Path) -> bytes:
    if not path.exists():
        raise ModelError(
            f"model file {path} does not exist",
            "pull it with `edge-agent models pull NAME` (see `edge-agent models list`) or fix the path",
        )
    if path.is_dir():
        raise ModelError(
            f"model path {path} is a directory, not a .tflite file", "give the path of the .tflite file"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}", "check the file's permissions") from None
    # A FlatBuffer TFLite model carries the identifier "TFL3" at bytes 4..8.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(
            f"{path} is not a TFLite model (no TFL3 identifier; {len(data)} bytes): corrupt or wrong file",
            "re-download it with `edge-agent models pull NAME` (checks the sha256), or give a .tflite file",
        )
    return data


def has_edgetpu_op(model_bytes: bytes) -> bool:
    """True when the model was compiled for the Edge TPU (holds an ``edgetpu-custom-op``)."""
    return EDGETPU_CUSTOM_OP.encode() in model_bytes


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Route what native code (LiteRT's C++, a delegate) writes to fd 2 meanwhile into our log:
    ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` becomes a DEBUG record of
    ``agent.inference.litert`` instead of a bare unprefixed line on stderr (which journald would
    file at the unit's default priority). ``WARNING:``/``ERROR:`` lines keep their level; any other
    line (another thread's) is written back to stderr unchanged."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded): nothing to route
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            passthrough = []
            for line in text.splitlines():
                head, _, rest = line.partition(": ")
                level = _NATIVE_LEVELS.get(head)
                if level is None:
                    passthrough.append(line)
                else:
                    _native_log.log(level, "%s", rest.strip())
            if passthrough:
                sys.stderr.write("\n".join(passthrough) + "\n")
                sys.stderr.flush()


_native_log = logging.getLogger("agent.inference.litert")
_NATIVE_LEVELS = {"INFO": logging.DEBUG, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


def _build(
    Interpreter: Any, path: Path, delegates: list[Any], num_threads: int, max_detections: int | None = None
) -> Any:
    """Create and allocate an interpreter; runtime errors become ModelError.

    ``max_detections``: raise the cap of an SSD postprocess op to this (see ``postprocess``)."""
    content = None
    if max_detections:
        from agent.inference.postprocess import raise_max_detections

        data, old = raise_max_detections(_read_model(path), max_detections)
        if old is not None:
            content = data
            log.info("%s: detections per frame raised from %d to %d", path.name, old, max_detections)
    with native_stderr_to_log():
        try:
            src = {"model_content": content} if content is not None else {"model_path": str(path)}
            interp = Interpreter(**src, experimental_delegates=delegates or None, num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise _model_error(path, exc) from None
        try:
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise _model_error(path, exc) from None
    return interp


def _model_error(path: Path, exc: Exception) -> ModelError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if EDGETPU_CUSTOM_OP in text:
        return AcceleratorError(
            f"{path.name} is compiled for the Edge TPU (edgetpu-custom-op) and no Edge TPU delegate is loaded",
            "connect a Coral and install libedgetpu (apt install libedgetpu1-std) with inference.accelerator = "
            '"edgetpu" or "auto", or use the CPU model (the catalog entry without _edgetpu)',
        )
    if "unresolved custom op" in text.lower():
        return ModelError(
            f"{path.name} cannot run on this runtime: {first.rstrip('.')}",
            "the model needs a custom operator this runtime does not have; use a model converted "
            "with built-in ops only (or the runtime/delegate it was built for)",
        )
    if (
        "Model provided has model identifier" in text
        or "Could not open" in text
        or "flatbuffer" in text.lower()
    ):
        return ModelError(
            f"{path} is not a valid TFLite model: {first}",
            "re-download it with `edge-agent models pull NAME` (checks the sha256)",
        )
    return ModelError(
        f"cannot load model {path.name}: {first}",
        "check that the file is a complete .tflite model for this runtime (re-pull it to verify its sha256)",
    )


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
        accelerator: ``"auto"`` (edgetpu, then gpu, then cpu), ``"cpu"`` (XNNPACK),
            ``"edgetpu"`` or ``"gpu"``. An explicit accelerator that cannot be used is an error.
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
    if accelerator not in ("auto", "cpu", "edgetpu", "gpu"):
        raise ModelError(f"unknown accelerator {accelerator!r}", "use auto, cpu, edgetpu or gpu")
    path = Path(model_path)
    data = _read_model(path)
    Interpreter, load_delegate, rt_name = load_runtime(runtime)
    reasons: list[str] = []

    if delegate_path:
        dlg = _load_delegate(load_delegate, delegate_path, dict(delegate_options or {}), "delegate")
        return InterpreterInfo(
            _build(Interpreter, path, [dlg], num_threads, max_detections), "delegate", reasons, rt_name, path
        )

    cpu_is_tpu_model = has_edgetpu_op(data)
    tpu_path = Path(edgetpu_model_path) if edgetpu_model_path else (path if cpu_is_tpu_model else None)

    # -- Edge TPU
    if accelerator in ("auto", "edgetpu"):
        try:
            lib_err = _library_loadable(edgetpu_library())
            if lib_err is not None:
                raise AcceleratorError(
                    f"edgetpu: cannot load {edgetpu_library()}: {lib_err}",
                    _delegate_hint("edgetpu", edgetpu_library()),
                )
            if tpu_path is None:
                raise AcceleratorError(
                    f"edgetpu: no Edge TPU variant of {path.name} is known",
                    "compile the model with edgetpu_compiler and set edgetpu_variant in its catalog "
                    'entry (or load the _edgetpu.tflite file), or use accelerator "auto"/"cpu"',
                )
            if tpu_path != path:
                _read_model(tpu_path)
            opts = {"device": edgetpu_device} if edgetpu_device else {}
            dlg = _load_delegate(load_delegate, edgetpu_library(), opts, "edgetpu")
            interp = _build(Interpreter, tpu_path, [dlg], num_threads, max_detections)
            log.info("inference: %s on the Edge TPU (%s)", tpu_path.name, edgetpu_device or "first found")
            return InterpreterInfo(interp, "edgetpu", reasons, rt_name, tpu_path)
        except AcceleratorError as exc:
            if accelerator == "edgetpu":
                raise
            reasons.append(exc.message)
            log.debug("inference: skipping the Edge TPU: %s", exc.message)

    # -- GPU
    if accelerator in ("auto", "gpu"):
        libs = [gpu_delegate_path] if gpu_delegate_path else default_gpu_libraries()
        errors: list[str] = []
        for lib in libs:
            try:
                dlg = _load_delegate(load_delegate, lib, {}, "gpu")
            except AcceleratorError as exc:
                errors.append(exc.message)
                continue
            try:
                interp = _build(Interpreter, path, [dlg], num_threads, max_detections)
            except ModelError as exc:
                errors.append(f"gpu: {exc.message}")
                continue
            log.info("inference: %s on the GPU delegate (%s)", path.name, lib)
            return InterpreterInfo(interp, "gpu", reasons, rt_name, path)
        if not gpu_delegate_path and errors and all("cannot load" in e for e in errors):
            msg = f"gpu: no GPU delegate library found (tried {', '.join(libs)})"
        else:
            msg = "; ".join(errors) if errors else "gpu: no delegate library"
        if accelerator == "gpu":
            raise AcceleratorError(msg, _delegate_hint("gpu", libs[0]))
        reasons.append(msg)
        log.debug("inference: skipping the GPU: %s", msg)

    # -- CPU (XNNPACK is the default CPU path of LiteRT)
    if cpu_is_tpu_model:
        raise AcceleratorError(
            f"{path.name} is compiled for the Edge TPU (edgetpu-custom-op) and cannot run on the CPU; "
            + (f"no Edge TPU is usable ({reasons[0]})" if reasons else "no Edge TPU is usable"),
            "connect a Coral and install libedgetpu (apt install libedgetpu1-std), or use the CPU model "
            "(the catalog entry's plain file; models compiled with edgetpu_compiler keep a CPU original)",
        )
    interp = _build(Interpreter, path, [], num_threads, max_detections)
    log.info(
        "inference: %s on the CPU (XNNPACK, %d threads)%s",
        path.name,
        num_threads,
        f"; skipped: {'; '.join(reasons)}" if reasons else "",
    )
    return InterpreterInfo(interp, "cpu", reasons, rt_name, path)
