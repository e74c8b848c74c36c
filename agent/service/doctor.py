"""``edge-agent doctor``: everything a unit needs, checked for real, before the installer leaves.

Checks (see ``agent.service.doctor_checks``): the config loads; each enabled camera yields a frame;
each model in use verifies (sha256) and loads and runs on the configured accelerator; each serial
sensor answers with a valid frame; the broker accepts a TLS connection with the credentials; the
clock is synchronised (NTP, or GPS); disk space; database integrity; device-node permissions for
the service user. Each check has a deadline and runs in its own thread, so a hung RTSP camera or
a dead serial line costs its timeout, never the whole run. Exit status 0 only when no check fails
(warnings allowed); ``--json`` prints one object; ``--publish`` sends the report, retained, to
``{prefix}/{site}/{device}/doctor`` as the unit's as-installed record.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from agent import __version__
from agent.errors import AgentError
from agent.parts import PARTS
from agent.service.doctor_checks import GROUPS, build_checks
from agent.service.doctor_checks.base import FAIL, OK, SKIP, WARN, Check, Context, Result, fail, ok, warn

DEFAULT_CONFIG = Path("/etc/edge-agent/config.toml")
SCHEMA = "edge-agent/doctor/1"
DEFAULT_TIMEOUT_S = 15.0


@dataclass
class Outcome:
    name: str
    group: str
    result: Result
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        d: dict[str, Any] = {
            "name": self.name,
            "group": self.group,
            "status": r.status,
            "detail": r.detail,
            "duration_s": round(self.duration_s, 3),
        }
        if r.hint:
            d["hint"] = r.hint
        if r.data:
            d["data"] = r.data
        return d


def run_check(check: Check) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``check`` in a daemon thread; the dict gets ``result`` and ``end`` when it finishes."""
    box: dict[str, Any] = {"start": time.monotonic()}

    def target() -> None:
        try:
            res = check.run()
        except AgentError as exc:
            res = fail(exc.message, exc.hint or "see the message")
        except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
            res = fail(
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "a bug in edge-agent doctor: report it with this line",
            )
        box["result"] = res
        box["end"] = time.monotonic()

    t = threading.Thread(target=target, name=f"doctor:{check.name}", daemon=True)
    t.start()
    return t, box


def run_all(checks: list[Check]) -> tuple[list[Outcome], bool]:
    """Run ``checks`` concurrently, each against its own deadline. Returns (outcomes, any timed out)."""
    started = [(c, *run_check(c)) for c in checks]
    out, hung = [], False
    for c, t, box in started:
        t.join(max(0.0, box["start"] + c.timeout_s - time.monotonic()))
        if "result" in box:
            out.append(Outcome(c.name, c.group, box["result"], box["end"] - box["start"]))
        else:
            hung = True
            out.append(
                Outcome(
                    c.name,
                    c.group,
                    fail(
                        f"no answer within {c.timeout_s:g} s (hung device or network?)",
                        "check the device or the network path; --timeout S gives slow ones longer",
                    ),
                    time.monotonic() - box["start"],
                )
            )
    return out, hung


def select(checks: list[Check], only: tuple[str, ...]) -> list[Check]:
    if not only:
        return checks
    return [c for c in checks if c.group in only or c.name in only]


def load(config: str | None) -> tuple[Any, Outcome]:
    """(config or None, the config check's outcome). Load errors are a failed check, not a traceback."""
    from agent.config import load_config

    t0 = time.monotonic()
    path = Path(config) if config else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    try:
        cfg = load_config(path)
    except AgentError as exc:
        return None, Outcome(
            "config", "config", fail(exc.message, exc.hint or "fix the config"), time.monotonic() - t0
        )
    took = time.monotonic() - t0
    what = (
        f"{path}: device {cfg.device.site}/{cfg.device.id}, {len(cfg.cameras)} camera(s), {len(cfg.sensors)} sensor(s), "
        f"hash {cfg.config_hash()}"
    )
    if path is None:
        res = warn(
            f"no config file ({DEFAULT_CONFIG} does not exist): built-in defaults",
            "provision the unit: edge-agent provision --bundle FILE --device-id ID (or pass --config FILE)",
        )
    else:
        res = ok(what, path=str(path), config_hash=cfg.config_hash())
    return cfg, Outcome("config", "config", res, took)


def overall(outcomes: list[Outcome]) -> str:
    statuses = {o.result.status for o in outcomes}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def report(cfg: Any, outcomes: list[Outcome], config_path: str | None) -> dict[str, Any]:
    """The report: the ``--json`` output and the ``--publish`` payload (schema edge-agent/doctor/1)."""
    counts = {s: sum(o.result.status == s for o in outcomes) for s in (OK, WARN, FAIL, SKIP)}
    return {
        "schema": SCHEMA,
        "ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "device": cfg.device.id if cfg else None,
        "site": cfg.device.site if cfg else None,
        "agent_version": __version__,
        "config_hash": cfg.config_hash() if cfg else None,
        "config_file": config_path,
        "host": {
            "hostname": platform.node(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "status": overall(outcomes),
        "counts": counts,
        "checks": [o.to_dict() for o in outcomes],
    }


_MARK = {OK: "ok", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}


def render_table(outcomes: list[Outcome], width: int = 100) -> str:
    """An aligned table: CHECK, STATUS, DETAIL, with a ``fix:`` line under each warning or failure."""
    name_w = max([len("CHECK")] + [len(o.name) for o in outcomes])
    lines = [f"{'CHECK':<{name_w}}  STATUS  DETAIL"]
    indent = " " * (name_w + 10)
    for o in outcomes:
        r = o.result
        lines.append(f"{o.name:<{name_w}}  {_MARK[r.status]:<6}  {r.detail}")
        if r.hint and r.status in (WARN, FAIL):
            lines.append(f"{indent}fix: {r.hint}")
    return "\n".join(lines)


def topic_of(cfg: Any) -> str:
    from agent.sync.topics import Topics

    return f"{Topics(cfg.mqtt.topic_prefix, cfg.device.site, cfg.device.id).base}/doctor"


@click.command("doctor")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="EDGE_AGENT_CONFIG",
    help=f"Config file [default: {DEFAULT_CONFIG} if it exists, else the built-in defaults].",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (every check and the overall status)."
)
@click.option(
    "--publish",
    is_flag=True,
    help="Send the report, retained (QoS 1), to {prefix}/{site}/{device}/doctor "
    "as the unit's as-installed record, and wait for the broker's PUBACK.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds each camera, sensor or broker check may take (models get max(2x, 60 s)).",
)
@click.option(
    "--only",
    multiple=True,
    metavar="CHECK",
    help=f"Run only these checks (repeatable): a group ({', '.join(GROUPS)}) or a name like camera:north.",
)
@click.option(
    "--user",
    default=None,
    help="Check device permissions for this user [default: edge-agent if it exists, else you].",
)
def doctor_cmd(
    config: str | None,
    as_json: bool,
    publish: bool,
    timeout_s: float,
    only: tuple[str, ...],
    user: str | None,
) -> None:
    """Check that this unit works: cameras, models, sensors, broker, clock, disk, database, permissions.

    Prints a table (or --json). Exit status 0 when no check failed (warnings allowed), 1 otherwise.
    Leave the site only when it says ok.
    """
    _check_only(only)
    cfg, cfg_outcome = load(config)
    config_path = cfg_outcome.result.data.get("path")
    outcomes = [cfg_outcome]
    hung = False
    if cfg is not None:
        got, hung = _run_checks(cfg, Context(timeout_s=timeout_s, user=user), only)
        outcomes += got
    rep = report(cfg, outcomes, config_path)
    pub_line, pub_ok = _publish(cfg, rep, timeout_s) if publish else (None, True)
    if as_json:
        out = dict(rep)
        if publish:
            out["published"] = {"ok": pub_ok, "topic": topic_of(cfg) if cfg else None, "detail": pub_line}
        click.echo(json.dumps(out, indent=2))
    else:
        _echo_table(outcomes, rep, pub_line, pub_ok)
    _exit(1 if rep["status"] == FAIL or not pub_ok else 0, hung)


def _check_only(only: tuple[str, ...]) -> None:
    """Every --only value names a check group (or ``service-user``)."""
    bad = [o for o in only if o.split(":")[0] not in GROUPS and o != "service-user"]
    if bad:
        raise click.BadParameter(
            f"unknown check {bad[0]!r}; groups: {', '.join(GROUPS)}", param_hint="--only"
        )


def _run_checks(cfg: Any, ctx: Context, only: tuple[str, ...]) -> tuple[list[Outcome], bool]:
    """The parts' checks, the GPS-dependent ones after the rest; True when one of them hung."""
    first, after = build_checks(cfg, ctx, PARTS)
    got, hung1 = run_all(select(first, only))
    ctx.gps_done.set()  # whatever the GPS check learned is in ctx now (or it was not selected)
    got2, hung2 = run_all(select(after, only))
    return got + got2, hung1 or hung2


def _publish(cfg: Any, rep: dict[str, Any], timeout_s: float) -> tuple[str | None, bool]:
    """Send the report, retained, to the doctor topic: (the line to print, whether it was sent)."""
    if cfg is None:
        return "not published: the config did not load", False
    from agent.service.doctor_checks.broker import publish as do_publish

    try:
        line = do_publish(
            cfg,
            topic_of(cfg),
            json.dumps(rep, sort_keys=True).encode(),
            min(timeout_s, cfg.mqtt.connect_timeout_s),
        )
    except AgentError as exc:
        return f"not published: {exc.message}" + (f"\n  fix: {exc.hint}" if exc.hint else ""), False
    return line, True


def _echo_table(outcomes: list[Outcome], rep: dict[str, Any], pub_line: str | None, pub_ok: bool) -> None:
    click.echo(render_table(outcomes))
    n = rep["counts"]
    click.echo(
        f"\n{rep['status'].upper()}: {n[OK]} ok, {n[WARN]} warning(s), {n[FAIL]} failed, {n[SKIP]} skipped"
    )
    if pub_line:
        click.echo(pub_line, err=not pub_ok)


def _exit(code: int, hung: bool) -> NoReturn:
    if hung:  # a check is stuck in a driver call: do not wait for its thread at interpreter exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


commands = [doctor_cmd]
