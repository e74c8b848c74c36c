"""Commands: ``edge-agent models list|pull|verify``, ``edge-agent detect``, ``edge-agent classify``.

Heavy modules (OpenCV, LiteRT) are imported inside the commands so ``edge-agent --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from agent.errors import AgentError, SourceError
from agent.inference.delegates import ORDER as ACCELERATOR_ORDER

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


def _configs(config_file: str | None, models_dir: str | None, **inference: Any):
    from agent.config import load_config

    cfg = load_config(config_file)
    if models_dir:
        cfg.models.dir = Path(models_dir)
    for k, v in inference.items():
        if v is not None:
            setattr(cfg.inference, k, v)
    return cfg


_config_opt = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Config file (models.dir, mirror, inference settings). Default: built-in defaults.",
)
_dir_opt = click.option(
    "--models-dir", type=click.Path(file_okay=False), help="Override models.dir (where models are installed)."
)


# -- models --------------------------------------------------------------------------------------


@click.group("models")
def models_group() -> None:
    """List, install (pull) and verify catalog models and sample media."""


@models_group.command("list")
@_config_opt
@_dir_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
def models_list(config_file: str | None, models_dir: str | None, as_json: bool) -> None:
    """List the catalog: name, kind, task, licence, installed or not."""
    from agent.inference import catalog as cat

    cfg = _configs(config_file, models_dir)
    c = cat.load_catalog(cfg.models)
    for e in c.entries.values():
        installed = cat.installed_path(e, cfg.models).is_file()
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "name": e.name,
                        "kind": e.kind,
                        "task": e.task,
                        "family": e.family,
                        "file": e.file,
                        "license": e.license,
                        "installed": installed,
                        "url": e.url,
                        "sha256": e.sha256,
                    }
                )
            )
        else:
            click.echo(
                f"{e.name:28} {e.kind:6} {(e.task or '-'):9} {e.license:11} "
                f"{'installed' if installed else 'not installed':14} {e.description}"
            )
    if not as_json:
        click.echo(f"catalog: {c.path}; install dir: {cat.install_dir(cfg.models)}")


@models_group.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Every catalog entry (models and media).")
@click.option(
    "--mirror",
    type=click.Path(file_okay=False),
    help="Copy from this mirror (models/, media/) instead of downloading. Default: models.mirror or EDGE_AGENT_MIRROR.",
)
@click.option("--force", is_flag=True, help="Reinstall even when a verified file is present.")
@_config_opt
@_dir_opt
def models_pull(
    names: tuple[str, ...],
    pull_all: bool,
    mirror: str | None,
    force: bool,
    config_file: str | None,
    models_dir: str | None,
) -> None:
    """Install catalog entries NAME... (sha256-verified; a mismatching file is refused)."""
    from agent.inference import catalog as cat

    cfg = _configs(config_file, models_dir)
    if pull_all:
        names = tuple(cat.load_catalog(cfg.models).entries)
    if not names:
        raise AgentError("no model named", "give catalog names (`edge-agent models list`) or --all")
    cat.pull(
        names,
        cfg.models,
        mirror,
        progress=sys.stderr.isatty(),
        force=force,
        on_done=lambda e, p: click.echo(f"ok: {e.name} -> {p} (sha256 verified)"),
    )


@models_group.command("verify")
@_config_opt
@_dir_opt
def models_verify(config_file: str | None, models_dir: str | None) -> None:
    """Check the sha256 of every installed catalog file; exit 1 when one differs."""
    from agent.inference import catalog as cat

    cfg = _configs(config_file, models_dir)
    bad = []
    for e, status in cat.verify(cfg.models):
        click.echo(f"{e.name:28} {status}")
        if status not in ("ok", "missing"):
            bad.append(e.name)
    if bad:
        raise AgentError(
            f"{len(bad)} installed file(s) do not match the catalog: {', '.join(bad)}",
            f"reinstall them: `edge-agent models pull --force {' '.join(bad)}`",
        )


# -- detect / classify -----------------------------------------------------------------------------


def _frames(path: Path) -> Iterator[tuple[int, str, Any]]:
    """``(frame number, source name, BGR image)`` of an image, a folder of images or a video."""
    import cv2

    if not path.exists():
        raise SourceError(f"{path} does not exist", "give an image, a folder of images or a video file")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXT)
        if not files:
            raise SourceError(
                f"{path} holds no images ({', '.join(sorted(IMAGE_EXT))})", "give a folder of images"
            )
        for i, f in enumerate(files):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise SourceError(f"cannot decode image {f}", "remove or replace the file")
            yield i, str(f), img
        return
    if path.suffix.lower() in VIDEO_EXT:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SourceError(
                f"cannot open video {path}", "check the file and that OpenCV can decode its codec"
            )
        try:
            i = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                yield i, str(path), img
                i += 1
            if i == 0:
                raise SourceError(f"no frame could be decoded from {path}", "check the file")
        finally:
            cap.release()
        return
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(
            f"cannot decode {path} as an image", "give a .jpg/.png/.bmp image, a folder or a video"
        )
    yield 0, str(path), img


def _annotate(img, dets) -> Any:
    import cv2

    out = img.copy()
    for d in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 200, 255), 2)
        cv2.putText(
            out,
            f"{d.label} {d.score:.2f}",
            (x1 + 2, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (0, 200, 255),
            1,
            cv2.LINE_AA,
        )
    return out


class _Writer:
    """--out: an image file (single image), a video file (video input) or a folder (folder input)."""

    def __init__(self, out: str | None, src: Path) -> None:
        self.out = Path(out) if out else None
        self.src = src
        self.video: Any = None  # a cv2.VideoWriter once the first frame gives the size

    def write(self, n: int, name: str, img) -> None:
        import cv2

        if self.out is None:
            return
        if self.src.is_dir():
            self.out.mkdir(parents=True, exist_ok=True)
            target = self.out / Path(name).name
        elif self.src.suffix.lower() in VIDEO_EXT:
            if self.video is None:
                h, w = img.shape[:2]
                cap = cv2.VideoCapture(str(self.src))
                fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
                cap.release()
                self.video = cv2.VideoWriter(str(self.out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                if not self.video.isOpened():
                    raise SourceError(
                        f"cannot write video {self.out}", "use an .mp4 or .avi file name in a writable folder"
                    )
            self.video.write(img)
            return
        else:
            target = self.out
        if not cv2.imwrite(str(target), img):
            raise SourceError(f"cannot write {target}", "use a .jpg or .png name in a writable folder")

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


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
    _config_opt,
    _dir_opt,
]


def _with(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _engine(model, threshold, accelerator, family, labels, threads, config_file, models_dir):
    from agent.inference import load_engine

    cfg = _configs(config_file, models_dir, accelerator=accelerator, labels=labels, num_threads=threads)
    if threshold is not None:
        cfg.inference.threshold = threshold
    fam = None if family in (None, "auto") else family
    eng = load_engine(model or cfg.inference.model, cfg.inference, cfg.models, family=fam)
    return eng


def _summary(eng, frames: int, ms: list[float]) -> str:
    avg = sum(ms) / len(ms) if ms else 0.0
    skipped = f" (skipped: {'; '.join(eng.accelerator_reasons)})" if eng.accelerator_reasons else ""
    return f"{eng.name} ({eng.family}) on {eng.accelerator}{skipped}: {frames} frame(s), invoke {avg:.1f} ms/frame"


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
    from agent.privacy.blur import apply_privacy
    from agent.privacy.faces import shared_finder
    from agent.privacy.masks import MaskSet

    cfg = _configs(config_file, models_dir)
    masks = None
    if camera is not None:
        cam_cfg = next((c for c in cfg.cameras if c.name == camera), None)
        if cam_cfg is None:
            raise AgentError(
                f"no camera named {camera!r} in the config",
                f"cameras: {', '.join(c.name for c in cfg.cameras) or 'none'} (give --config FILE)",
            )
        masks = MaskSet(camera, cam_cfg.masks)
    priv = cfg.privacy
    eng = _engine(model, threshold, accelerator, family, labels, threads, config_file, models_dir)
    if eng.task != "detect":
        raise AgentError(
            f"model {eng.name} is a classifier", f"use `edge-agent classify {path} --model {eng.name}`"
        )
    src = Path(path)
    writer = _Writer(out, src)
    ms: list[float] = []
    n = 0
    try:
        for n_frame, name, img in _frames(src):
            if masks:
                masks.apply(img)
            dets, _, t = eng.run(img, state_key="cli")
            if masks:
                dets = masks.filter(dets, (img.shape[1], img.shape[0]))
            ms.append(t["invoke_ms"])
            n += 1
            for d in dets:
                if as_json:
                    obj = {"frame": n_frame, **d.as_dict()}
                    if src.is_dir():
                        obj["file"] = Path(name).name
                    click.echo(json.dumps(obj))
                else:
                    click.echo(
                        f"frame {n_frame}: {d.label} {d.score:.2f} [{', '.join(f'{v:.0f}' for v in d.box)}]"
                    )
            if writer.out is not None:
                shown = img.copy()
                apply_privacy(shown, dets, priv.blur, priv.blur_labels, shared_finder(cfg))
                writer.write(n_frame, name, _annotate(shown, dets))
    finally:
        writer.close()
    click.echo(_summary(eng, n, ms), err=as_json)


DEFAULT_CLASSIFIER = "mobilenet_v2_imagenet"


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
    for n_frame, _name, img in _frames(Path(path)):
        _, classes, t = eng.run(img, state_key="cli", top_k=top_k)
        ms.append(t["invoke_ms"])
        n += 1
        for c in classes:
            if as_json:
                click.echo(json.dumps({"frame": n_frame, **c.as_dict()}))
            else:
                click.echo(f"frame {n_frame}: {c.label} {c.score:.3f} (class {c.class_id})")
    click.echo(_summary(eng, n, ms), err=as_json)


commands = [models_group, detect_cmd, classify_cmd]
