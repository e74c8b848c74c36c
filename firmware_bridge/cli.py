"""Technician commands: simulate-serial, sensors decode, aqi, readings."""

from __future__ import annotations

import json
import re
import signal
import sys

import click

from agent.clihelp import check_name, query, since_param, source_options
from agent.errors import AgentError
from firmware_bridge import aqi as aqi_mod
from firmware_bridge.drivers import DRIVER_NAMES, make_driver


@click.command("simulate-serial")
@click.option("--device", type=click.Choice(DRIVER_NAMES), required=True, help="Device to simulate.")
@click.option("--link", default=None, help="Symlink to the pty slave (default /tmp/edge-agent-sim-DEVICE).")
@click.option(
    "--noise",
    type=float,
    default=0.05,
    show_default=True,
    help="Probability per frame of each line fault (garbage, truncation / bad checksum).",
)
@click.option(
    "--unplug-every",
    type=float,
    default=0.0,
    help="Unplug (close the pty, remove the link) every N seconds; 0: never.",
)
@click.option(
    "--unplug-for",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds before the replug (a new pty behind the same link).",
)
@click.option("--rate", type=float, default=None, help="Reports per second (default: the device's own).")
@click.option("--seed", type=int, default=None, help="Random seed for a reproducible stream.")
@click.option("--duration", type=float, default=None, help="Stop after N seconds (default: until Ctrl-C).")
def simulate_serial(device, link, noise, unplug_every, unplug_for, rate, seed, duration) -> None:
    """Create a pseudo-terminal speaking DEVICE's protocol; point a sensor's `port` at --link."""
    from firmware_bridge.simulator import Simulator

    link = link or f"/tmp/edge-agent-sim-{device}"
    sim = Simulator(
        device,
        link,
        noise=noise,
        unplug_every_s=unplug_every,
        unplug_for_s=unplug_for,
        rate=rate,
        seed=seed,
        duration_s=duration,
    )
    signal.signal(signal.SIGTERM, lambda *_: sim._stop.set())
    sim.pty.plug()
    click.echo(f"simulating {device} on {sim.pty.slave_name} (link {link}); Ctrl-C to stop", err=True)
    try:
        sim.run(plugged=True)
    except KeyboardInterrupt:
        pass
    finally:
        sim.pty.unplug()
    click.echo(f"sent {sim.frames} reports, {sim.unplugs} unplug(s)", err=True)


@click.group("sensors")
def sensors_group() -> None:
    """Serial sensor tools."""


@sensors_group.command("decode")
@click.option("--driver", type=click.Choice(DRIVER_NAMES), required=True, help="Protocol of the capture.")
@click.argument("file", type=click.File("rb"))
def sensors_decode(driver: str, file) -> None:
    """Decode a raw capture (FILE, or - for stdin): one JSON object per line per message or error."""
    dec = make_driver(driver)
    out = sys.stdout
    while True:
        chunk = file.read(65536)
        events = dec.feed(chunk) if chunk else dec.flush()
        for ev in events:
            out.write(json.dumps(ev.to_dict(), default=str) + "\n")
        if not chunk:
            break


@click.command("aqi")
@click.option("--pm25", type=float, default=None, help="PM2.5 in µg/m³ (24-hour average or NowCast).")
@click.option("--pm10", type=float, default=None, help="PM10 in µg/m³.")
@click.option(
    "--table",
    type=click.Choice(aqi_mod.TABLE_NAMES),
    default=aqi_mod.DEFAULT_TABLE,
    show_default=True,
    help="EPA breakpoint table.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def aqi_cmd(pm25, pm10, table, as_json) -> None:
    """US EPA Air Quality Index from PM2.5 and/or PM10."""
    try:
        r = aqi_mod.aqi(pm25, pm10, table)
    except ValueError as exc:
        raise AgentError(str(exc), "pass --pm25 and/or --pm10 with a concentration >= 0") from None
    r = {k: r[k] for k in ("aqi", "category", "dominant", "table")} | {"sub_indices": r["sub_indices"]}
    if as_json:
        click.echo(json.dumps(r))
    else:
        click.echo(f"AQI {r['aqi']} ({r['category']}), dominant {r['dominant']}, table {r['table']}")


_DUR = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_duration(text: str) -> float:
    m = _DUR.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r}: use a number and s, m, h or d (e.g. 30m, 1h, 2d)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@click.command("readings")
@click.option("--since", default="1h", show_default=True, help="How far back (30m, 1h, 2d).")
@click.option("--sensor", default=None, callback=check_name, help="Only this sensor.")
@click.option("--metric", default=None, help="Only this metric.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Most rows shown (newest last).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@source_options
def readings_cmd(since, sensor, metric, limit, as_json, config, url, db, offline) -> None:
    """Sensor readings, oldest first: from the running agent's API or, when it does not answer, the
    local database (read-only); stderr says which one answered."""
    if metric is not None and len(metric) > 64:
        raise click.BadParameter("at most 64 characters", param_hint="--metric")
    start = since_param(parse_duration(since))
    rows, _ = query(
        config,
        url,
        db,
        offline,
        "readings",
        lambda src: src.readings(sensor=sensor, metric=metric, since=start, limit=limit),
    )
    for r in rows:
        if as_json:
            click.echo(json.dumps({k: r[k] for k in ("ts", "sensor", "metric", "value", "unit", "quality")}))
        else:
            flags = f"  [{','.join(r['quality'])}]" if r["quality"] else ""
            click.echo(
                f"{r['ts']}  {r['sensor']:<12} {r['metric']:<18} {r['value']:>12.4g} {r['unit']}{flags}"
            )
    if not rows and not as_json:
        click.echo(f"no readings since {start}", err=True)


commands = [simulate_serial, sensors_group, aqi_cmd, readings_cmd]
__all__ = ["commands"]
