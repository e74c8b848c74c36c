"""``edge-agent validate``: count a recorded clip with the agent's own pipeline and compare with
hand-counted ground truth (see docs/validation.md).

Exit codes: 0 every line and direction within ``--max-error``; 1 at least one outside; 2 a bad
config or truth file; 3 the model cannot be used; 4 the clip cannot be read.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from agent.analytics.validate import EPOCH
from agent.analytics.validate_text import print_result
from agent.errors import ConfigError


def run_counts(
    cfg: Any, camera: str, *, progress: Any = None, stats: dict | None = None
) -> tuple[list[dict], float]:
    """Run the pipeline over the camera's file once; return its crossing rows and the media clock's
    start (seconds since the epoch). ``stats``, when given, receives the tracking figures: confirmed
    tracks and re-linked fragments.

    Args:
        cfg: an ``AgentConfig`` holding the camera (changed in place for the run).
        camera: the camera's name.
        progress: called now and then with the number of frames read so far.
    """
    from agent.runner import run_agent  # the whole daemon: loaded only when a clip is counted

    cam, t0 = _for_one_run(cfg, camera)
    with tempfile.TemporaryDirectory(prefix="edge-agent-validate-") as tmp:
        cfg.storage.path = Path(tmp) / "validate.sqlite"
        done = threading.Event()
        try:
            pipe = run_agent(cfg, exit_on_end=True, on_started=_progress_watch(progress, camera, done))
        finally:
            done.set()
        _check_run(pipe, camera, cam)
        runner = pipe.analytics.get(camera)
        rows = _read_crossings(cfg.storage.path, camera, runner, stats)
    return rows, t0.timestamp()


def _for_one_run(cfg: Any, camera: str) -> tuple[Any, datetime]:
    """Set ``cfg`` up for one validation run of ``camera`` (file read once, unpaced, nothing but the
    camera); returns the camera and the start of its media clock."""
    cam = next(c for c in cfg.cameras if c.name == camera)
    cam.loop = False
    cam.realtime = False
    cam.enabled = True
    if cam.start_time is None:
        cam.start_time = EPOCH
    t0 = cam.start_time if cam.start_time.tzinfo else cam.start_time.replace(tzinfo=timezone.utc)
    cfg.cameras = [cam]
    cfg.sensors = []
    cfg.api.enabled = False
    cfg.mqtt.enabled = False
    cfg.storage.integrity_check = "off"
    return cam, t0


def _progress_watch(progress: Any, camera: str, done: threading.Event) -> Callable[[Any], None]:
    """The pipeline's ``on_started``: a thread that reports the frames read until ``done`` is set."""

    def watch(pipe: Any) -> None:
        if progress is None:
            return

        def loop() -> None:
            src = pipe.cameras.get(camera)
            while not done.wait(0.25):
                if src is not None:
                    progress(src.frames_read)

        threading.Thread(target=loop, name="validate-progress", daemon=True).start()

    return watch


def _check_run(pipe: Any, camera: str, cam: Any) -> None:
    """``ModelError`` when the model could not be used, ``SourceError`` when no frame was read."""
    errors = pipe.engine_errors
    if errors:
        from agent.errors import ModelError

        raise ModelError(
            f"model {', '.join(errors)} cannot be used: {'; '.join(errors.values())}",
            "fix inference.model (or --model): `edge-agent models list` shows the catalog",
        )
    src = pipe.cameras.get(camera)
    if src is not None and src.frames_read == 0:
        from agent.errors import SourceError

        raise SourceError(
            f"camera {camera}: no frame could be read from {cam.source}"
            + (f" ({src.last_error})" if src.last_error else ""),
            "give a video file OpenCV can read (mp4, avi, mkv)",
        )


def _read_crossings(db: Path, camera: str, runner: Any, stats: dict | None) -> list[dict]:
    """The run's crossing rows in time order (and its tracking figures into ``stats``)."""
    conn = sqlite3.connect(str(db))
    try:
        if stats is not None:
            stats["tracks"] = conn.execute(
                "SELECT count(*) FROM tracks WHERE camera = ?", (camera,)
            ).fetchone()[0]
            stats["relinked_fragments"] = runner.tracker.relinks if runner is not None else 0
        conn.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in conn.execute(
                "SELECT ts, line, direction, class, track_id, x, y FROM crossings WHERE camera = ? ORDER BY ts",
                (camera,),
            )
        ]
    finally:
        conn.close()


def _parse_line(spec: str) -> dict:
    try:
        name, coords = spec.split("=", 1)
        v = [float(x) for x in coords.split(",")]
        if len(v) != 4 or not name:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--line {spec!r}: not NAME=x1,y1,x2,y2",
            "give a name and the two end points, e.g. --line main=0,450,1280,450 (pixels or 0..1)",
        ) from None
    return {"name": name, "points": [[v[0], v[1]], [v[2], v[3]]]}


def _build(clip, truth, config_file, camera, model, line_specs, detect_fps, fps):
    from agent.config import load_config

    cfg = load_config(config_file)
    if config_file:
        cam = _config_camera(cfg, config_file, camera, clip, line_specs)
    else:
        cam = _truth_camera(clip, truth, line_specs, detect_fps or fps)
        cfg.cameras = [cam]
    if model:
        cam.model = model
    if detect_fps and config_file:
        cam.detect_fps = detect_fps
    return cfg, cam


def _config_camera(cfg, config_file, camera, clip, line_specs):
    """The camera of ``--config`` to validate (``--camera``, else the one with counting lines)."""
    cams = [c for c in cfg.cameras if (camera is None or c.name == camera)]
    if camera is not None and not cams:
        raise ConfigError(
            f"{config_file}: no camera named {camera!r}",
            f"cameras: {', '.join(c.name for c in cfg.cameras) or 'none'}",
        )
    with_lines = [c for c in cams if c.analytics.lines]
    if len(with_lines) != 1:
        raise ConfigError(
            f"{config_file}: {len(with_lines)} cameras with counting lines",
            "name the camera to validate with --camera",
        )
    cam = with_lines[0]
    if clip:
        cam.source = clip
    if line_specs:
        cam.analytics.lines = [
            type(cam.analytics.lines[0]).model_validate(_parse_line(s)) for s in line_specs
        ]
    return cam


def _truth_camera(clip, truth, line_specs, detect_fps):
    """A camera for the clip alone, with the ``--line`` lines or else the truth file's."""
    from pydantic import ValidationError

    from agent.config import CameraConfig
    from agent.configbase import format_validation_error

    if not clip:
        raise ConfigError(
            "no clip to count", "give the clip (edge-agent validate CLIP --truth FILE) or --config"
        )
    if line_specs:
        lines = [_parse_line(s) for s in line_specs]
    else:
        lines = [
            {"name": tl.name, "points": tl.points, "directions": list(tl.directions)}
            for tl in truth.lines.values()
            if tl.points and tl.directions
        ]
        if not lines:
            raise ConfigError(
                f"truth file {truth.path} gives no line geometry (points, directions)",
                "give the lines with --line NAME=x1,y1,x2,y2, or use --config",
            )
    spec = {"name": "validate", "source": clip, "analytics": {"lines": lines}}
    if detect_fps:
        spec["detect_fps"] = detect_fps
    try:
        return CameraConfig.model_validate(spec)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, "the lines"),
            "fix the line (points, directions) or the truth file",
        ) from None


@click.command("validate")
@click.argument("clip", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--truth",
    "truth_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Ground truth (JSON or CSV, docs/validation.md).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Config whose camera (and model) to validate; CLIP then replaces its source.",
)
@click.option("--camera", help="Camera of --config (default: the one with counting lines).")
@click.option("--model", help="Model (catalog name or .tflite path) instead of the config's.")
@click.option(
    "--line",
    "line_specs",
    multiple=True,
    help="NAME=x1,y1,x2,y2 (repeatable); default: the config's lines, else the truth file's.",
)
@click.option(
    "--detect-fps",
    type=float,
    help="Frames per second inferred (default: the config's; without a config every frame).",
)
@click.option(
    "--tolerance",
    "tolerance_s",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds a counted crossing may be off its truth.",
)
@click.option(
    "--max-error",
    type=float,
    default=0.05,
    show_default=True,
    help="Largest |counted - truth| / truth that passes, per line and direction.",
)
@click.option(
    "--pictures",
    "pictures_dir",
    type=click.Path(file_okay=False),
    default="validate-pictures",
    show_default=True,
    help="Folder for the time-slice picture of each line.",
)
@click.option("--no-pictures", is_flag=True, help="Do not write pictures.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
def validate_cmd(
    clip,
    truth_file,
    config_file,
    camera,
    model,
    line_specs,
    detect_fps,
    tolerance_s,
    max_error,
    pictures_dir,
    no_pictures,
    as_json,
    progress,
):
    """Count CLIP with the agent's pipeline and compare with hand-counted TRUTH, per line, direction
    and class: truth, counted, matched, missed and extra (with frames), accuracy. Exit 0 when every
    line and direction is within --max-error, 1 when not."""
    from agent.analytics.truth import load_truth
    from agent.analytics.validate import clip_info, compare

    truth = load_truth(truth_file)
    if clip is None and config_file is None and truth.clip:
        cand = Path(truth_file).parent / truth.clip
        clip = str(cand) if cand.exists() else None
    cfg, cam = _build(clip, truth, config_file, camera, model, line_specs, detect_fps, None)
    src_probe = cam.source
    fps, n_frames, size = clip_info(src_probe)
    if not config_file and not detect_fps:
        cam.detect_fps = min(fps, 120.0)
    if truth.fps is None:
        truth = load_truth(truth_file, fps=fps)
    lines = {lc.name: lc for lc in cam.analytics.lines}
    if not set(lines) & set(truth.lines):
        raise ConfigError(
            f"no line of the camera ({', '.join(lines) or 'none'}) is in the truth file ({', '.join(truth.lines)})",
            "name the lines as the truth file does",
        )
    rows, t0, stats = _count(cfg, cam, n_frames, progress)
    res = compare(
        truth,
        rows,
        t0,
        fps=fps,
        frames=n_frames,
        clip=str(src_probe),
        lines=lines,
        frame_size=size,
        tolerance_s=tolerance_s,
        max_error=max_error,
    )
    res.tracking = stats
    if not no_pictures:
        _pictures(res, lines, size, src_probe, Path(pictures_dir))
    if as_json:
        click.echo(json.dumps(res.as_dict(), indent=1))
    else:
        print_result(res, truth_file)
    sys.exit(0 if res.ok else 1)


def _count(cfg, cam, n_frames, progress):
    """:func:`run_counts` with a progress bar on stderr (``progress`` None: when it is a terminal)."""
    show = sys.stderr.isatty() if progress is None else progress
    bar = click.progressbar(length=max(n_frames, 1), label="counting", file=sys.stderr) if show else None
    if bar is not None:
        bar.__enter__()

    def on_progress(n):
        if bar is not None and n > bar.pos:
            bar.update(n - bar.pos)

    try:
        stats: dict = {}
        rows, t0 = run_counts(cfg, cam.name, progress=on_progress, stats=stats)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    return rows, t0, stats


def _pictures(res, lines, size, clip, out) -> None:
    """The time-slice picture of each line with a report, into ``out`` (listed in ``res.pictures``)."""
    from agent.analytics.geometry import to_pixels
    from agent.analytics.validate import time_slice

    for name, lc in lines.items():
        reps = [r for r in res.reports if r.line == name]
        if reps:
            px = to_pixels(lc.points, lc.units, size, f"line {name}")
            res.pictures.append(time_slice(clip, px, reps, out / f"{Path(clip).stem}_{name}.png"))


commands = [validate_cmd]
