"""``edge-agent hub`` (a hub worker: ingest), ``edge-agent hub status`` and ``edge-agent hub serve``."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.hub.worker import Hub

DEFAULT_DSN = "sqlite:///hub.sqlite"


def _dsn(dsn: str | None, db: str | None) -> str:
    return dsn or (db if db else os.environ.get("EDGE_HUB_DSN") or DEFAULT_DSN)


_dsn_option = click.option(
    "--dsn",
    envvar="EDGE_HUB_DSN",
    help="The hub database: postgresql://user@host/db (needs the 'hub' extra) or sqlite:///hub.sqlite "
    f"[default: $EDGE_HUB_DSN, else {DEFAULT_DSN}].",
)


@click.group("hub", invoke_without_command=True)
@click.option(
    "--broker", help="mqtt://[user:pass@]host[:port] or mqtts://host[:port] (TLS). Required to ingest."
)
@_dsn_option
@click.option(
    "--db", type=click.Path(dir_okay=False), help="Same as --dsn with a SQLite file path (older spelling)."
)
@click.option(
    "--topic", default="city/#", show_default=True, help="Subscription, e.g. 'city/#' or 'city/site-7/#'."
)
@click.option(
    "--prefix", help="The agents' topic prefix (default: the topic's levels before the first wildcard)."
)
@click.option(
    "--share",
    metavar="GROUP",
    help="Join the MQTT 5 shared subscription $share/GROUP/<topic>: N workers split the load (e.g. --share hub).",
)
@click.option("--username", help="Broker user name.")
@click.option(
    "--password-file", type=click.Path(exists=True, dir_okay=False), help="File holding the broker password."
)
@click.option("--password-env", help="Environment variable holding the broker password.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    help="CA of the broker's certificate (mqtts://).",
)
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (mutual TLS).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Client key (mutual TLS).")
@click.option(
    "--client-id",
    help="Fixed client id: a persistent session, so the broker queues messages while the worker is down.",
)
@click.option("--protocol", type=click.Choice(["5", "3.1.1"]), default="5", show_default=True)
@click.option("--replay/--no-replay", default=True, show_default=True, help="Repair gaps with cmd/replay.")
@click.option(
    "--gap-grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a new gap waits before its first replay request (out-of-order arrival closes most).",
)
@click.option(
    "--replay-retry",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds before asking again for a gap still open (doubling up to --replay-retry-max).",
)
@click.option("--replay-retry-max", type=click.FloatRange(min=0.1), default=600.0, show_default=True)
@click.option(
    "--replay-rate",
    type=click.FloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="At most this many replay requests per second from this worker.",
)
@click.option(
    "--max-replay",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Seqs asked for in one request (the unit's mqtt.max_replay caps it too).",
)
@click.option(
    "--refresh", type=float, default=2.0, show_default=True, help="Seconds between table refreshes."
)
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C/SIGTERM).")
@click.option("--quiet", is_flag=True, help="No table; only errors (for a service).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the unit list as JSON at each refresh instead of a table.",
)
@click.pass_context
def hub_group(ctx: click.Context, broker: str | None, dsn: str | None, db: str | None, topic: str,
              prefix: str | None, share: str | None, username: str | None, password_file: str | None,
              password_env: str | None, ca_file: str | None, cert: str | None, key: str | None,
              client_id: str | None, protocol: str, replay: bool, gap_grace: float, replay_retry: float,
              replay_retry_max: float, replay_rate: float, max_replay: int, refresh: float,
              duration: float | None, quiet: bool, as_json: bool) -> None:  # fmt: skip
    """The city's side: a hub worker stores every unit's summaries, health, events and status in
    PostgreSQL or SQLite (once each, keyed by device and seq), tracks each unit's seq ranges and
    repairs gaps with cmd/replay; `hub status` and `hub serve` show the fleet.

    Run N workers with --share hub on one PostgreSQL to split a city's load (docs/fleet.md)."""
    if ctx.invoked_subcommand is not None:
        return
    if not broker:
        raise AgentError(
            "--broker is required to ingest", "e.g. edge-agent hub --broker mqtt://broker:1883 --dsn ..."
        )
    from agent.configbase import resolve_secret
    from agent.hub.worker import Hub

    password = resolve_secret(None, password_file, password_env, "hub password")
    try:
        hub = Hub(
            broker,
            topic,
            _dsn(dsn, db),
            prefix=prefix,
            share=share,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert,
            key_file=key,
            client_id=client_id,
            protocol=protocol,
            replay=replay,
            gap_grace_s=gap_grace,
            replay_retry_s=replay_retry,
            replay_retry_max_s=replay_retry_max,
            replay_rate_per_s=replay_rate,
            max_replay=max_replay,
        )
    except ValueError as exc:
        raise AgentError(str(exc), "e.g. --broker mqtt://broker:1883 or mqtts://broker:8883") from None
    if not _run_hub(hub, refresh, duration, quiet, as_json):
        # a hub that never reached its broker did not do its job: say so, exit non-zero
        raise AgentError(
            f"the hub never connected to {broker}: {hub.last_error or 'no answer'}",
            "check the broker address and port, the credentials (--username, --password-file) and TLS (--ca-file)",
        )


def _run_hub(hub: Hub, refresh: float, duration: float | None, quiet: bool, as_json: bool) -> bool:
    """Run the worker until SIGTERM, Ctrl-C or ``duration``, showing the units every ``refresh``
    seconds (a table, JSON, or nothing); returns whether it ever connected to its broker."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hub.start()
    end = time.monotonic() + duration if duration else None
    tty = sys.stdout.isatty()
    ever = False
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(min(refresh, max(0.0, end - time.monotonic())) if end else refresh)
            ever = ever or hub.connected.is_set()
            if quiet:
                continue
            if as_json:
                click.echo(json.dumps(hub.devices()))
            else:
                click.echo(("\033[2J\033[H" if tty else "") + hub.table() + ("" if tty else "\n"))
    except KeyboardInterrupt:
        pass
    finally:
        ever = ever or hub.connected.is_set()
        hub.stop()
    return ever


def _open(dsn: str | None):
    from agent.hub.db import HubDB, parse_dsn

    d = _dsn(dsn, None)
    kind, target = parse_dsn(d)
    if kind == "sqlite" and not os.path.exists(target):
        from agent.errors import StoreError

        raise StoreError(
            f"hub database {target} does not exist",
            "give --dsn (or $EDGE_HUB_DSN), or start a hub worker first",
        )
    return HubDB(d, migrate=False)


@hub_group.command("status")
@_dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the units, the workers and the totals.")
@click.option("--silent-after", type=click.FloatRange(min=1), default=3.0, show_default=True,
              help="A unit is silent after this many summary intervals with nothing received.")  # fmt: skip
def hub_status(dsn: str | None, as_json: bool, silent_after: float) -> None:
    """Every unit: online/offline, last seen, backlog, gaps open/closed, seqs lost, accelerator, AQI,
    today's counts; silent units and untrusted clocks marked with '!'. Then the hub workers.

    Exit status: 0 all well, 1 a unit is flagged (silent, clock untrusted or an open gap)."""
    from agent.hub import fleet

    db = _open(dsn)
    try:
        rows = fleet.units(db, silent_after=silent_after)
        ws = fleet.workers(db)
        if as_json:
            click.echo(
                json.dumps(
                    {"units": rows, "workers": ws, "totals": fleet.summary(rows)}, indent=2, default=str
                )
            )
        else:
            click.echo(fleet.table(db, rows))
            for w in ws:
                click.echo(
                    f"worker {w['name']}: {'alive' if w['alive'] else 'gone'}, last heartbeat {w['heartbeat']}, "
                    f"stored {w['ingested']}, duplicates {w['duplicates']}, replays asked {w['replays']}, "
                    f"lag {w['lag_s'] or 0:.1f} s, queued {w['queued'] or 0}"
                )
    finally:
        db.close()
    if any(r["silent"] or r["clock_untrusted"] or r["gaps_open"] for r in rows):
        sys.exit(1)


@hub_group.command("serve")
@_dsn_option
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8760, show_default=True)
def hub_serve(dsn: str | None, bind: str, port: int) -> None:
    """Serve the fleet page (/) and its JSON (/api/fleet) from the hub database; it refreshes itself.
    Read-only; put it behind the city's reverse proxy and single sign-on to show it beyond localhost."""
    from agent.hub.page import serve

    _open(dsn).close()
    serve(_dsn(dsn, None), bind, port)


commands = [hub_group]
