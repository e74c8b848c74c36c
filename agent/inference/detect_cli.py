"""Commands: ``edge-agent detect`` and ``edge-agent classify`` on an image, a folder or a video.

Heavy modules (OpenCV, LiteRT) are imported inside the commands so ``edge-agent --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.errors import AgentError
from agent.inference.delegates import ORDER as ACCELERATOR_ORDER
from agent.inference.frames_cli import OutputWriter, annotate, read_frames
from agent.inference.options_cli import cli_config, config_opt, dir_opt

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from agent.config import AgentConfig
    from agent.inference import Engine
    from agent.privacy.masks import MaskSet
    from agent.types import Detection

DEFAULT_CLASSIFIER = "mobilenet_v2_imagenet"

_model_opts = [
    click.option(
        "--model", "-m", default=None, help="Catalog name or .tflite path (default: inference.model)."
    ),
    click.option("--threshold", "-t", type=click.FloatRange(0, 1), default=None, help="Minimum score."),
    click.option(
        "--accelerator",
        type=click.Choice(list(ACCELERATOR_ORDER)),
        default=None,
        help="auto tries edgetpu, gpu, then cpu.",
    ),
    click.option(
        "--family",
        type=click.Choice(["auto", "ssd", "yolo", "classifier", "recurrent", "blazeface"]),
        default=None,
        help="Model family (default: from the catalog or the model's tensors).",
    ),
    click.option(
        "--labels",
        type=click.Path(dir_okay=False),
        default=None,
        help="Label file for a model given by path.",
    ),
    click.option("--threads", type=click.IntRange(1, 64), default=None, help="CPU threads."),
    click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout."),
    config_opt,
    dir_opt,
]


def _with(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _engine(model, threshold, accelerator, family, labels, threads, config_file, models_dir):
    from agent.inference import load_engine

    cfg = cli_config(config_file, models_dir, accelerator=accelerator, labels=labels, num_threads=threads)
    if threshold is not None:
        cfg.inference.threshold = threshold
    fam = None if family in (None, "auto") else family
    eng = load_engine(model or cfg.inference.model, cfg.inference, cfg.models, family=fam)
    return eng


def _summary(eng, frames: int, ms: list[float]) -> str:
    avg = sum(ms) / len(ms) if ms else 0.0
    skipped = f" (skipped: {'; '.join(eng.accelerator_reasons)})" if eng.accelerator_reasons else ""
    return f"{eng.name} ({eng.family}) on {eng.accelerator}{skipped}: {frames} frame(s), invoke {avg:.1f} ms/frame"


# -- detect ----------------------------------------------------------------------------------------


def _camera_masks(cfg: AgentConfig, camera: str | None) -> MaskSet | None:
    """The privacy masks of ``--camera`` (none without the option; an error for an unknown camera)."""
    from agent.privacy.masks import MaskSet

    if camera is None:
        return None
    cam_cfg = next((c for c in cfg.cameras if c.name == camera), None)
    if cam_cfg is None:
        raise AgentError(
            f"no camera named {camera!r} in the config",
            f"cameras: {', '.join(c.name for c in cfg.cameras) or 'none'} (give --config FILE)",
        )
    return MaskSet(camera, cam_cfg.masks)


def _detect_frame(eng: Engine, img: np.ndarray, masks: MaskSet | None) -> tuple[list[Detection], float]:
    """The detections of one frame (masked as the agent masks them) and its invoke time in ms."""
    if masks:
        masks.apply(img)
    dets, _, t = eng.run(img, state_key="cli")
    if masks:
        dets = masks.filter(dets, (img.shape[1], img.shape[0]))
    return dets, t["invoke_ms"]


def _echo_detections(n_frame: int, name: str, dets: list[Detection], src: Path, as_json: bool) -> None:
    """One line per detection: JSON (with the file name for a folder) or text."""
    for d in dets:
        if as_json:
            obj = {"frame": n_frame, **d.as_dict()}
            if src.is_dir():
                obj["file"] = Path(name).name
            click.echo(json.dumps(obj))
        else:
            click.echo(f"frame {n_frame}: {d.label} {d.score:.2f} [{', '.join(f'{v:.0f}' for v in d.box)}]")


def _private_annotated(cfg: AgentConfig, img: np.ndarray, dets: list[Detection]) -> np.ndarray:
    """A copy of ``img`` blurred as privacy.blur says, with the detections drawn on it."""
    from agent.privacy.blur import apply_privacy
    from agent.privacy.faces import shared_finder

    shown = img.copy()
    apply_privacy(shown, dets, cfg.privacy.blur, cfg.privacy.blur_labels, shared_finder(cfg))
    return annotate(shown, dets)


@click.command("detect")
@click.argument("path", type=click.Path())
@_with(_model_opts)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Annotated output: an image file (image input), a video file (video) or a folder (folder). "
    "Blurred as privacy.blur says (default: people).",
)
@click.option(
    "--camera",
    default=None,
    help="Apply this camera's privacy masks (from --config) to the frames first, as the agent does.",
)
def detect_cmd(
    path,
    model,
    threshold,
    accelerator,
    family,
    labels,
    threads,
    as_json,
    config_file,
    models_dir,
    out,
    camera,
) -> None:
    """Detect objects in PATH (an image, a folder of images or a video).

    With --json: one object per detection per line,
    {"frame", "label", "class_id", "score", "box": [x1, y1, x2, y2]} in source-image pixels.
    The --out images get the same privacy treatment as the agent's snapshots (privacy.blur, and with
    --camera that camera's masks).
    """
    cfg = cli_config(config_file, models_dir)
    masks = _camera_masks(cfg, camera)
    eng = _engine(model, threshold, accelerator, family, labels, threads, config_file, models_dir)
    if eng.task != "detect":
        raise AgentError(
            f"model {eng.name} is a classifier", f"use `edge-agent classify {path} --model {eng.name}`"
        )
    src = Path(path)
    writer = OutputWriter(out, src)
    ms: list[float] = []
    try:
        for n_frame, name, img in read_frames(src):
            dets, invoke_ms = _detect_frame(eng, img, masks)
            ms.append(invoke_ms)
            _echo_detections(n_frame, name, dets, src, as_json)
            if writer.out is not None:
                writer.write(n_frame, name, _private_annotated(cfg, img, dets))
    finally:
        writer.close()
    click.echo(_summary(eng, len(ms), ms), err=as_json)


# -- classify --------------------------------------------------------------------------------------


@click.command("classify")
@click.argument("path", type=click.Path())
@_with(_model_opts)
@click.option(
    "--top-k",
    "-k",
    type=click.IntRange(1, 1000),
    default=None,
    help="Classes per frame (default: inference.top_k).",
)
def classify_cmd(
    path, model, threshold, accelerator, family, labels, threads, as_json, config_file, models_dir, top_k
) -> None:
    """Classify PATH (an image, a folder of images or a video): the top-k classes, best first.

    With --json: one object per class per line, {"frame", "label", "class_id", "score"}.
    The default threshold is 0 (report the top-k); --threshold raises it. The default --model here
    is the catalog's classifier, mobilenet_v2_imagenet (inference.model is a detector).
    """
    eng = _engine(
        model or DEFAULT_CLASSIFIER,
        0.0 if threshold is None else threshold,
        accelerator,
        family,
        labels,
        threads,
        config_file,
        models_dir,
    )
    if eng.task != "classify":
        raise AgentError(
            f"model {eng.name} is a detector", f"use `edge-agent detect {path} --model {eng.name}`"
        )
    ms: list[float] = []
    n = 0
    for n_frame, _name, img in read_frames(Path(path)):
        _, classes, t = eng.run(img, state_key="cli", top_k=top_k)
        ms.append(t["invoke_ms"])
        n += 1
        for c in classes:
            if as_json:
                click.echo(json.dumps({"frame": n_frame, **c.as_dict()}))
            else:
                click.echo(f"frame {n_frame}: {c.label} {c.score:.3f} (class {c.class_id})")
    click.echo(_summary(eng, n, ms), err=as_json)
