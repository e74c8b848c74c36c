"""Console commands: ``edge-agent status`` and ``edge-agent tail`` (their shared options and the
config lookup are in :mod:`agent.clihelp`).

They find the daemon's API through the config (``--config``, ``$EDGE_AGENT_CONFIG`` or
/etc/edge-agent/config.toml: ``api.bind`` / ``api.port``, and the token file when the API is off
loopback) and read the SQLite file read-only when the daemon does not answer.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import click

from agent.api.client import open_source
from agent.clihelp import config_opt, db_opt, load, offline_opt, url_opt

_SYM = {"ok": ("●", "green"), "warn": ("●", "yellow"), "bad": ("●", "red"), "off": ("○", None)}


def _light(state: str, text: str) -> str:
    if not sys.stdout.isatty():  # piped or logged: words, not glyphs
        return f"{state.upper():<4} {text}"
    sym, color = _SYM.get(state, ("?", None))
    return click.style(sym, fg=color) + " " + text


def _f(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}{unit}"
    return f"{v}{unit}"


def print_status(st: dict[str, Any], where: str) -> None:
    dev = st.get("device") or {}
    overall = st.get("overall", "off")
    click.echo(
        _light(
            overall,
            click.style(f"edge-agent {st.get('version')} on {dev.get('site')}/{dev.get('id')}", bold=True)
            + f"  ({'running' if st.get('running') else 'NOT RUNNING'}; from {where})",
        )
    )
    for name, lt in (st.get("lights") or {}).items():
        click.echo("  " + _light(lt.get("state", "off"), f"{name:<12} {lt.get('why', '')}"))
    cams = st.get("cameras") or {}
    if cams:
        click.echo("cameras:")
        for name, c in cams.items():
            line = (
                f"  {name:<12} {c.get('state', '-'):<12} fps {_f(c.get('fps'))}  latency p50/p95 "
                f"{_f(c.get('latency_p50_ms'))}/{_f(c.get('latency_p95_ms'))} ms  {c.get('model') or '-'} on {c.get('accelerator') or '-'}"
            )
            if c.get("last_frame_age_s") is not None:
                line += f"  last frame {c['last_frame_age_s']:.1f} s ago"
            elif c.get("last_stats_ts"):
                line += f"  (last stats {c['last_stats_ts']})"
            click.echo(line)
            if c.get("last_error"):
                click.echo(f"  {'':<12} last error: {c['last_error']}")
    sensors = st.get("sensors")
    if isinstance(sensors, dict) and sensors:
        click.echo("sensors:")
        for name, h in sensors.items():
            if isinstance(h, dict):
                click.echo(
                    f"  {name:<12} {'connected' if h.get('connected') else 'disconnected':<12} frames {h.get('frames_ok', '-')}"
                    f" bad {h.get('frames_bad', '-')} reconnects {h.get('reconnects', '-')}"
                    + (f"  last error: {h['last_error']}" if h.get("last_error") else "")
                )
    sync = st.get("sync") or {}
    ob = st.get("outbox") or {}
    if sync or ob:
        backlog = sync.get("backlog", ob.get("pending"))
        state = (
            ("connected" if sync.get("connected") else "disconnected")
            if sync.get("enabled")
            else "disabled"
            if sync
            else "-"
        )
        click.echo(
            f"sync: MQTT {state}, outbox backlog {_f(backlog)}"
            + (f", last error: {sync['last_error']}" if sync.get("last_error") else "")
        )
    db = st.get("database") or {}
    disk_light = (st.get("lights") or {}).get("disk") or {}
    click.echo(f"database: {db.get('path')}; {disk_light.get('why') or 'disk unknown'}")


@click.command("status")
@config_opt
@url_opt
@db_opt
@offline_opt
@click.option("--json", "as_json", is_flag=True, help="The whole status document as JSON.")
def status_cmd(config: str | None, url: str | None, db: str | None, offline: bool, as_json: bool) -> None:
    """Is the unit working, and if not, why: health lights, cameras, sensors, sync, disk.

    Asks the running agent's API; when it does not answer, reads the database (read-only) and says
    so. Exit status: 0 all ok, 1 a warning, 2 something bad or the agent not running.
    """
    cfg, _ = load(config)
    src = open_source(cfg, url=url, db=db, offline=offline)
    try:
        st = src.status()
    finally:
        src.close()
    if as_json:
        st["_source"] = src.kind
        click.echo(json.dumps(st, indent=2))
    else:
        print_status(st, src.where)
    sys.exit({"ok": 0, "warn": 1}.get(str(st.get("overall")), 2))


def _fmt_det(d: dict[str, Any]) -> str:
    b = d.get("box") or []
    box = ",".join(f"{v:.0f}" for v in b)
    tid = f" track {d['track_id']}" if d.get("track_id") is not None else ""
    return f"{d['ts']}  det      {d['camera']:<12} {d['label']:<12} {d['score']:.2f}  [{box}]{tid}"


def _fmt_record(r: dict[str, Any]) -> str:
    data = json.dumps(r.get("data"), separators=(",", ":"))
    return f"{r['ts']}  {r['kind'][:8]:<8} {r['camera']:<12} {data[:160]}{'...' if len(data) > 160 else ''}"


def _fmt_reading(r: dict[str, Any]) -> str:
    q = f"  [{','.join(r['quality'])}]" if r.get("quality") else ""
    return (
        f"{r['ts']}  reading  {r['sensor']:<12} {r['metric']:<12} {r['value']:.4g} {r.get('unit') or ''}{q}"
    )


@click.command("tail")
@config_opt
@url_opt
@db_opt
@offline_opt
@click.option("--camera", default=None, help="Only this camera's detections.")
@click.option("--sensor", default=None, help="Only this sensor's readings.")
@click.option("--detections/--no-detections", default=True, show_default=True, help="Show detections.")
@click.option("--readings/--no-readings", default=True, show_default=True, help="Show sensor readings.")
@click.option(
    "--results/--no-results",
    default=True,
    show_default=True,
    help="Show the records of other result kinds (pose, segmentation: a model family's own).",
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(0, 1000),
    default=5,
    show_default=True,
    help="Recent rows of each kind shown first.",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, None),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line; 'kind' is detection, reading or result (then 'result_kind': pose, ...).",
)
def tail_cmd(
    config,
    url,
    db,
    offline,
    camera,
    sensor,
    detections,
    readings,
    results,
    lines,
    interval,
    duration,
    as_json,
) -> None:
    """Detections and sensor readings as they arrive (from the running agent, or its database)."""
    cfg, _ = load(config)
    src = open_source(cfg, url=url, db=db, offline=offline)
    click.echo(f"tailing {src.where}; Ctrl-C to stop", err=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    kinds = [k for k, on in (("detection", detections), ("reading", readings), ("result", results)) if on]
    last: dict[str, int] = {}
    fetch = _fetcher(src, camera, sensor)

    def emit(kind: str, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            last[kind] = max(last.get(kind, 0), int(r["id"]))
            click.echo(_as_json(kind, r) if as_json else _FMT[kind](r))

    t_end = None if duration is None else time.monotonic() + duration
    try:
        for kind in kinds:
            recent = fetch(kind, None, max(lines, 1))
            last[kind] = max((int(r["id"]) for r in recent), default=0)
            emit(kind, recent[-lines:] if lines else [])
        while not stop["now"] and (t_end is None or time.monotonic() < t_end):
            time.sleep(interval)
            for kind in kinds:
                while True:
                    rows = fetch(kind, last.get(kind, 0), 500)
                    emit(kind, rows)
                    if len(rows) < 500:
                        break
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `tail | head`: the reader has what it wanted; that is no agent trouble
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's last flush is quiet
        except OSError:
            pass
        return
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"the agent stopped answering ({exc}); run tail again to read the database", err=True)
        sys.exit(3)
    finally:
        src.close()


_FMT = {"detection": _fmt_det, "reading": _fmt_reading, "result": _fmt_record}


def _as_json(kind: str, r: dict[str, Any]) -> str:
    """One ``tail --json`` line: ``kind`` is the row's (a record's own kind is ``result_kind``)."""
    return json.dumps({**r, "kind": kind, **({"result_kind": r["kind"]} if kind == "result" else {})})


def _fetcher(
    src: Any, camera: str | None, sensor: str | None
) -> Callable[[str, int | None, int], list[dict]]:
    """``(kind, after_id, limit) -> rows`` of the source (the agent's API or its database)."""

    def fetch(kind: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        if kind == "detection":
            return src.detections(camera=camera, after_id=after, limit=limit)
        if kind == "result":
            return src.results(camera=camera, after_id=after, limit=limit)
        return src.readings(sensor=sensor, after_id=after, limit=limit)

    return fetch


commands = [status_cmd, tail_cmd]
