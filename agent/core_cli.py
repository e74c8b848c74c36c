"""Core commands: config check / example."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent.config import AgentConfig, example_config, load_config

if TYPE_CHECKING:
    from agent.pipeline import Pipeline


@click.group("config")
def config_group() -> None:
    """Check or print the configuration."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE; print the problems (key path, bad value, what is expected) or 'ok'."""
    cfg = load_config(file)
    click.echo(
        f"ok: {file} (device {cfg.device.site}/{cfg.device.id}, {len(cfg.cameras)} camera(s), "
        f"{len(cfg.sensors)} sensor(s), config hash {cfg.config_hash()})"
    )


@config_group.command("example")
def config_example() -> None:
    """Print a fully commented example config, generated from the schema."""
    click.echo(example_config(), nl=False)


commands: list[click.Command] = [config_group]


@click.command("run")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Config file (TOML) [default: $EDGE_AGENT_CONFIG, else /etc/edge-agent/config.toml, else built-in defaults].",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Run on the sample clip with the default model (pulled from the mirror or upstream).",
)
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option(
    "--exit-on-end",
    is_flag=True,
    help="Stop when every file source has ended and its frames are stored, even with sensors configured (without sensors the agent does so by itself).",
)
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Override storage.path.")
def run_cmd(
    config_file: str | None, demo: bool, duration: float | None, exit_on_end: bool, db_path: str | None
) -> None:
    """Run the agent daemon. SIGINT/SIGTERM stop it cleanly (sources stop, in-flight frames finish,
    the writer flushes; nothing already accepted is lost)."""
    from agent.runner import run_agent

    cfg, config_file = _run_config(config_file, demo, db_path)
    _setup_logging(cfg)
    pipe = run_agent(
        cfg,
        duration_s=duration,
        exit_on_end=True if exit_on_end else None,  # None: when every source has ended
        reload_config=_reloader(config_file, demo, db_path) if config_file else None,
        restore_signals=False,  # a SIGTERM while the report below is printed is not a death
    )
    _ignore_stop_signals()
    _print_run_report(pipe, cfg, config_file, db_path)


def _run_config(config_file: str | None, demo: bool, db_path: str | None) -> tuple[AgentConfig, str | None]:
    """The config to run (the same lookup as every other command), said on stderr with a warning
    when it configures nothing; ``--demo`` and ``--db`` applied."""
    from agent.clihelp import load as find_config

    cfg, config_file = find_config(config_file)
    click.echo(
        f"config: {config_file}"
        if config_file
        else "config: built-in defaults (no --config, $EDGE_AGENT_CONFIG or /etc/edge-agent/config.toml)",
        err=True,
    )
    if not demo and not any(c.enabled for c in cfg.cameras) and not cfg.sensors:
        click.echo(
            "warning: nothing to do: no camera and no sensor is configured\n"
            "  fix: add [[cameras]] or [[sensors]] to the config (edge-agent config example), or try --demo",
            err=True,
        )
    return _with_overrides(cfg, demo, db_path), config_file


def _with_overrides(cfg: AgentConfig, demo: bool, db_path: str | None) -> AgentConfig:
    if demo:
        cfg = demo_config(cfg)
    if db_path:
        cfg.storage.path = Path(db_path)  # what the config's validation makes of the string
    return cfg


def _reloader(config_file: str, demo: bool, db_path: str | None) -> Callable[[], AgentConfig]:
    """SIGHUP's config: the file read again, with the same ``--demo`` and ``--db``."""

    def reload_config() -> AgentConfig:
        return _with_overrides(load_config(config_file), demo, db_path)

    return reload_config


def _setup_logging(cfg: AgentConfig) -> None:
    """The config's log level and format (journald prefixes, JSON lines); -v / -vv may ask for more."""
    import logging as _logging

    from agent.service.logsetup import setup_logging

    root = _logging.getLogger()
    level = getattr(_logging, cfg.logging.level.upper())
    if root.handlers and root.level <= _logging.INFO:  # -v / -vv asked for more
        level = min(level, root.level)
    setup_logging(level, json_format=cfg.logging.json_format)


def _ignore_stop_signals() -> None:
    """The run is over and everything is committed: from here to the exit a SIGTERM/SIGINT is ignored.
    (Python resets its own handlers to the default while the interpreter shuts down, so a service
    manager's SIGTERM in that window would otherwise end a clean exit as a death by signal; an
    ignored signal stays ignored.)"""
    import signal as _signal

    for s in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(s, _signal.SIG_IGN)


def _print_run_report(pipe: Pipeline, cfg: AgentConfig, config_file: str | None, db_path: str | None) -> None:
    """What the run did: each camera's state and frames, the detections and rows stored, the counts."""
    st = pipe.status()
    for name, cam in st["cameras"].items():
        click.echo(
            f"camera {name}: {cam['state']}, {cam.get('frames_inferred', 0)} frames inferred"
            + (f", last error: {cam['last_error']}" if cam.get("last_error") else "")
        )
    w = st["writer"] or {}
    if pipe.results is not None:
        click.echo(f"detections: accepted {pipe.results.accepted_detections}")
    click.echo(
        f"database {cfg.storage.path}: {w.get('committed_rows', 0)} rows committed, "
        f"dropped {sum((w.get('dropped') or {}).values())}, failed {sum((w.get('failed') or {}).values())}"
    )
    from agent.analytics.report import count_lines, where_to_look

    for line in count_lines(pipe) + where_to_look(cfg, config_file, db_path):
        click.echo(line)


def demo_config(cfg: AgentConfig) -> AgentConfig:
    """The embedded default: the sample clip (looping) with the default model, a local SQLite file.

    Honest by construction: every frame of the 30 fps clip is offered (the clip is 20 frames; fewer
    would leave the tracker a handful of frames per pass), each pass of the loop is a new epoch (no
    track and no crossing carries over the seam; the end of the run says how many passes were
    counted), and only road users are kept (the bridge wall is not a train)."""
    from agent.analytics.config import DEFAULT_CLASSES
    from agent.config import _DEMO_CAMERAS, CameraConfig
    from agent.inference.catalog import ensure_media

    clip = ensure_media("traffic_frames", cfg.models)
    demo = dict(_DEMO_CAMERAS[0], source=str(clip), realtime=True, detect_fps=30)
    cfg.cameras = [CameraConfig.model_validate(demo)]
    cfg.inference.labels_keep = list(DEFAULT_CLASSES)
    return cfg


commands.append(run_cmd)


@click.command("bench")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Config file (model, accelerator)."
)
@click.option(
    "--clip",
    type=click.Path(exists=True, dir_okay=False),
    help="Video clip (default: the mirror's 4ku_traffic.mp4, else the sample clip).",
)
@click.option("--model", help="Model (catalog name or .tflite path); default inference.model.")
@click.option("--threads", type=int, default=1, show_default=True, help="num_threads for both measurements.")
@click.option(
    "--accelerator",
    type=click.Choice(["auto", "cpu", "edgetpu", "gpu"]),
    help="Override inference.accelerator.",
)
@click.option(
    "--raw-frames", type=int, default=300, show_default=True, help="invoke() calls in the raw measurement."
)
@click.option("--max-frames", type=int, help="Stop the pipeline measurement after this many frames.")
@click.option(
    "--with-api", is_flag=True, help="Run the local HTTP API beside the pipeline (its memory cost)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def bench_cmd(
    config_file, clip, model, threads, accelerator, raw_frames, max_frames, with_api, as_json
) -> None:
    """Benchmark: raw invoke() throughput vs end-to-end pipeline throughput, same model and threads."""
    import json as _json
    from pathlib import Path as _Path

    from agent.bench import default_clip, run_bench

    cfg = load_config(config_file)
    if model:
        cfg.inference.model = model
    if accelerator:
        cfg.inference.accelerator = accelerator
    cfg.inference.num_threads = threads
    cfg.mqtt.enabled = False
    res = run_bench(
        cfg,
        _Path(clip) if clip else default_clip(cfg),
        raw_frames=raw_frames,
        max_frames=max_frames,
        api=with_api,
    )
    if as_json:
        click.echo(_json.dumps(res))
        return
    click.echo(
        f"model {res['model']} on {res['accelerator']}, num_threads={res['num_threads']}, clip {res['clip']}"
    )
    click.echo(
        f"  raw invoke():  {res['raw_invoke_fps']:8.2f} frames/s  (median {res['raw_invoke_median_ms']:.2f} ms;"
        " before / after the pipeline: {:.2f} / {:.2f})".format(*res["raw_invoke_fps_before_after"])
    )
    click.echo(
        f"  end-to-end:    {res['pipeline_fps']:8.2f} frames/s  ({res['pipeline_frames']} frames in {res['pipeline_seconds']:.1f} s,"
        f" {res['detections_stored']} detections stored)"
    )
    click.echo(
        f"  engine around invoke(): preprocess {res['preprocess_median_ms']:.2f} ms + postprocess"
        f" {res['postprocess_median_ms']:.2f} ms = {res['overhead_vs_invoke']:.2f} x invoke (target <= 0.11)"
    )
    click.echo(f"  ratio e2e/raw: {res['ratio']:.3f}   (target >= 0.93 at num_threads=1)")
    click.echo(
        "  CPU per frame by stage: "
        + ", ".join(f"{k} {v:.2f}" for k, v in res["stage_cpu_ms_per_frame"].items())
        + f" ms (raw invoke {res['raw_invoke_median_ms']:.2f} ms)"
    )
    click.echo(
        f"  per frame in the pipeline: wall {res['pipeline_wall_ms_per_frame']:.2f} ms, inference thread busy"
        f" {res['pipeline_inference_busy_ms_per_frame']:.2f} ms, of which invoke() {res['pipeline_invoke_ms_per_frame']:.2f} ms"
        f" (alone: {1000 / res['raw_invoke_fps']:.2f} ms)"
    )
    click.echo(
        f"  peak RSS:      {res['peak_rss_mb']:.1f} MB (target <= 130 MB{', API on' if with_api else ''})"
    )
    click.echo("  RSS by stage:  " + ", ".join(f"{k} {v:.0f}" for k, v in res["rss_mb"].items()) + " MB")


commands.append(bench_cmd)
