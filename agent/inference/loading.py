"""``load_engine``: a catalog name (pulled when allowed) or a ``.tflite`` path to a ready
:class:`~agent.inference.engine.Engine`: the interpreter on the best accelerator
(:mod:`agent.inference.runtime`), the family adapter (the catalog's, the config's, or read from
the model's tensors), the labels, the tracker calibration, and the rebuild used when an
accelerator is lost or comes back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.inference.adapters import Adapter, detect_family, make_adapter
from agent.inference.engine import Engine
from agent.inference.modelfiles import configured_labels, default_labels, resolve_model
from agent.inference.runtime import InterpreterInfo, make_interpreter

log = logging.getLogger(__name__)


def load_engine(model: str, inference_cfg: Any, models_cfg: Any, *, family: str | None = None) -> Engine:
    """Load a model for inference.

    Args:
        model: a catalog name (pulled first when missing and ``models.auto_pull``) or a ``.tflite``
            path.
        inference_cfg: an ``InferenceConfig`` (runtime, accelerator, threads, thresholds, labels...).
        models_cfg: a ``ModelsConfig`` (catalog, install dir, mirror).
        family: force the family (``ssd``, ``yolo``, ``classifier``, ``recurrent``); default: the
            catalog entry's, else ``inference.family``, else read from the tensors.

    Returns:
        A ready :class:`Engine`.

    Raises:
        ModelError: unknown name, missing/corrupt/unrunnable model, wrong family.
        AcceleratorError: the requested accelerator is unavailable (``auto`` falls back instead).
    """

    accel = inference_cfg.accelerator
    entry, name, path, tpu_path = resolve_model(model, accel, models_cfg)
    interpreter_on = _interpreter_factory(path, tpu_path, inference_cfg)
    info = interpreter_on(accel)

    fam = family or (entry.family if entry and entry.family else None)
    if fam is None and inference_cfg.family != "auto":
        fam = inference_cfg.family
    if fam is None:
        fam = detect_family(info.interpreter)

    labels = configured_labels(entry, inference_cfg, models_cfg)
    adapter_kw = {
        "num_classes": len(labels) if labels else None,
        "iou_threshold": inference_cfg.iou_threshold,
        "max_detections": inference_cfg.max_detections,
    }
    adapter = make_adapter(fam, info.interpreter, **adapter_kw)
    if labels is None:
        labels = default_labels(fam, adapter)
    engine = Engine(
        name, info, adapter, labels, inference_cfg, label_offset=entry.label_offset if entry else 0
    )

    def rebuild(acc: str) -> tuple[InterpreterInfo, Adapter]:
        nfo = interpreter_on(acc)
        return nfo, make_adapter(fam, nfo.interpreter, **adapter_kw)

    engine.rebuild = rebuild
    # the tracker's score calibration for this detector (None: a model given by path, safe defaults)
    engine.calibration = dict(entry.tracker) if entry is not None and entry.tracker else None
    log.info(
        "loaded %r from %s (%s runtime)%s",
        engine,
        engine.path,
        engine.runtime,
        f"; skipped: {'; '.join(engine.accelerator_reasons)}" if engine.accelerator_reasons else "",
    )
    return engine


def _interpreter_factory(
    path: Path, tpu_path: Path | None, inference_cfg: Any
) -> Callable[[str], InterpreterInfo]:
    """``accelerator -> InterpreterInfo`` for this model and these settings (the first load, and the
    rebuilds when an accelerator is lost or comes back)."""

    def interpreter_on(acc: str) -> InterpreterInfo:
        external = acc in ("auto", "delegate")
        return make_interpreter(
            path,
            runtime=inference_cfg.runtime,
            accelerator="auto" if acc == "delegate" else acc,
            num_threads=inference_cfg.num_threads,
            edgetpu_device=inference_cfg.edgetpu_device,
            gpu_delegate_path=inference_cfg.gpu_delegate_path,
            delegate_path=inference_cfg.delegate_path if external else None,
            delegate_options=dict(inference_cfg.delegate_options),
            edgetpu_model_path=tpu_path,
            max_detections=inference_cfg.max_detections,
        )

    return interpreter_on
