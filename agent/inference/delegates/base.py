"""What every accelerator shares: the :class:`Accelerator` protocol, the :class:`LoadContext` it
loads from, the :class:`InterpreterInfo` it returns, and the helpers that turn runtime failures
into a :class:`~agent.errors.ModelError` / :class:`~agent.errors.AcceleratorError` with a fix.

An accelerator is one module under ``delegates/`` holding an object with a ``name``,
``probe(ctx)`` (``None`` when it can run here, else the :class:`AcceleratorError` saying why and
what to do) and ``load(ctx)`` (an allocated interpreter on it, or that error).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.errors import AcceleratorError, ModelError

log = logging.getLogger("agent.inference.runtime")

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


@dataclass
class LoadContext:
    """Everything an accelerator needs to load one model (built by ``make_interpreter``).

    Attributes:
        Interpreter: the runtime's interpreter class; ``load_delegate``: its delegate loader.
        runtime: ``"litert"`` or ``"tflite-runtime"``.
        path: the CPU ``.tflite`` file; ``data``: its bytes (already checked to be TFLite).
        tpu_path: the Edge TPU variant (or ``path`` itself when it is an Edge TPU model), if any.
        num_threads, max_detections: as in ``make_interpreter``.
        options: the accelerator settings of ``inference`` (``edgetpu_device``,
            ``gpu_delegate_path``, ``delegate_path``, ``delegate_options``).
        reasons: why the accelerators tried before this one were skipped.
    """

    Interpreter: Any
    load_delegate: Any
    runtime: str
    path: Path
    data: bytes
    tpu_path: Path | None = None
    num_threads: int = 2
    max_detections: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def info(self, interpreter: Any, accelerator: str, path: Path | None = None) -> InterpreterInfo:
        """The :class:`InterpreterInfo` of an interpreter this context's accelerator built."""
        return InterpreterInfo(interpreter, accelerator, self.reasons, self.runtime, path or self.path)


class Accelerator(Protocol):
    """One accelerator (see the module docstring)."""

    name: str

    def probe(self, ctx: LoadContext) -> AcceleratorError | None:
        """``None`` when this accelerator can run ``ctx``'s model here, else why not (with a fix)."""
        ...

    def load(self, ctx: LoadContext) -> InterpreterInfo:
        """An allocated interpreter on this accelerator; raises AcceleratorError / ModelError."""
        ...


def library_loadable(lib: str, *, plugin: bool = False) -> str | None:
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


def open_delegate(load_delegate: Any, lib: str, options: dict[str, str], what: str) -> Any:
    err = library_loadable(lib, plugin=True)
    if err is not None:
        raise AcceleratorError(f"{what}: cannot load {lib}: {err}", delegate_hint(what, lib))
    try:
        with native_stderr_to_log():
            return load_delegate(lib, options or {})
    except (ValueError, RuntimeError, OSError, AttributeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AcceleratorError(
            f"{what}: {lib} loaded but no delegate was created ({msg})", delegate_hint(what, lib)
        ) from None


def delegate_hint(what: str, lib: str) -> str:
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


def read_model(path: Path) -> bytes:
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


def build(
    Interpreter: Any, path: Path, delegates: list[Any], num_threads: int, max_detections: int | None = None
) -> Any:
    """Create and allocate an interpreter; runtime errors become ModelError.

    ``max_detections``: raise the cap of an SSD postprocess op to this (see ``postprocess``)."""
    content = None
    if max_detections:
        from agent.inference.postprocess import raise_max_detections

        data, old = raise_max_detections(read_model(path), max_detections)
        if old is not None:
            content = data
            log.info("%s: detections per frame raised from %d to %d", path.name, old, max_detections)
    with native_stderr_to_log():
        try:
            src = {"model_content": content} if content is not None else {"model_path": str(path)}
            interp = Interpreter(**src, experimental_delegates=delegates or None, num_threads=num_threads)
        except (ValueError, RuntimeError) as exc:
            raise model_error(path, exc) from None
        try:
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise model_error(path, exc) from None
    return interp


def model_error(path: Path, exc: Exception) -> ModelError:
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
