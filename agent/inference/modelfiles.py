"""Which files a model name means: the catalog entry, the CPU ``.tflite`` and its Edge TPU twin,
and the labels (the entry's file, ``inference.labels``, or the family's usual label space)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.errors import ModelError
from agent.inference.labels import coco80, packaged_labels, read_labels

log = logging.getLogger("agent.inference.engine")


def resolve_model(model: str, accel: str, models_cfg: Any) -> tuple[Any, str, Path, Path | None]:
    """``(catalog entry or None, name, CPU model path, Edge TPU variant path or None)`` of a
    catalog name or a ``.tflite`` path (pulled first when missing and ``models.auto_pull``)."""
    from agent.inference import catalog as cat

    entry = None
    tpu_path: Path | None = None
    if _is_path(model):
        path = Path(model).expanduser()
        name = path.stem
        cpu_twin = _cpu_twin_of(path, models_cfg) if path.exists() else None
        if cpu_twin is not None:  # an Edge TPU file whose CPU original the catalog knows
            entry, cpu_path = cpu_twin
            tpu_path, path = path, cpu_path
    else:
        entry, path = cat.resolve(model, models_cfg)
        name = entry.name
        if entry.kind != "model":
            raise ModelError(
                f"{model} is a media file, not a model", "give a model name (`edge-agent models list`)"
            )
        catalog = cat.load_catalog(models_cfg)
        if entry.edgetpu_variant and accel in ("auto", "edgetpu"):
            variant = catalog.get(entry.edgetpu_variant)
            try:
                _, tpu_path = cat.resolve(variant.name, models_cfg)
            except ModelError as exc:
                if accel == "edgetpu":
                    raise
                log.info("Edge TPU variant %s unavailable: %s", variant.name, exc.message)
        elif not entry.edgetpu_variant:
            parent = [e for e in catalog.models() if e.edgetpu_variant == entry.name]
            if parent:  # the catalog name of an Edge TPU file: keep its CPU original for fallback
                tpu_path = path
                entry, path = cat.resolve(parent[0].name, models_cfg)
    return entry, name, path, tpu_path


def configured_labels(entry: Any, inference_cfg: Any, models_cfg: Any) -> dict[int, str] | None:
    """The catalog entry's labels file, else ``inference.labels``, else ``None``."""
    from agent.inference import catalog as cat

    if entry is not None and entry.labels:
        return read_labels(cat.load_catalog(models_cfg).labels_dir / entry.labels)
    if inference_cfg.labels:
        return read_labels(inference_cfg.labels)
    return None


def default_labels(family: str, adapter: Any) -> dict[int, str]:
    """Labels for a model given by path without a label file: COCO / ImageNet when the shape says so."""
    if family == "ssd":
        log.info("no labels given: assuming the COCO 90-id label space (set inference.labels)")
        return packaged_labels("coco_labels.txt")
    if family == "yolo" and adapter.layout.num_attrs - (5 if adapter.layout.version == 5 else 4) == 80:
        log.info("no labels given: assuming the 80 COCO classes (set inference.labels)")
        return coco80(packaged_labels("coco_labels.txt"))
    if family == "blazeface":
        return {0: "face"}
    if family == "classifier" and getattr(adapter, "num_classes", 0) == 1001:
        log.info("no labels given: assuming ImageNet with background (set inference.labels)")
        return packaged_labels("imagenet_labels.txt")
    return {}


def _is_path(model: str) -> bool:
    return model.endswith(".tflite") or "/" in model or "\\" in model


def _cpu_twin_of(path: Path, models_cfg: Any) -> tuple[Any, Path] | None:
    """For an Edge TPU file: the catalog entry whose ``edgetpu_variant`` is this file, if installed."""
    from agent.inference import catalog as cat

    try:
        catalog = cat.load_catalog(models_cfg)
    except ModelError:
        return None
    for e in catalog.models():
        if e.edgetpu_variant and catalog.entries[e.edgetpu_variant].file == path.name:
            p = cat.installed_path(e, models_cfg)
            if p.is_file():
                return e, p
    return None
