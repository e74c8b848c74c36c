"""Service commands: ``provision`` (the installer's one command) and ``token show | rotate``."""

from __future__ import annotations

from pathlib import Path

import click

from agent.api import token as tokens
from agent.errors import AgentError
from agent.service import provision as prov
from agent.service.doctor import doctor_cmd

_path = click.Path(dir_okay=False, path_type=Path)


@click.command("provision")
@click.option(
    "--bundle", type=_path, help="Provisioning bundle (JSON, see docs/install.md); flags override it."
)
@click.option("--site", help="Site name (device.site), e.g. main-st-5th-ave.")
@click.option("--device-id", help="This unit's id (device.id); required, never guessed from the hostname.")
@click.option("--broker", metavar="URL", help="MQTT broker URL: mqtts://host:8883, mqtt://, wss://, ws://.")
@click.option("--username", help="MQTT user name.")
@click.option(
    "--password", help="MQTT password (prefer --password-file: command lines end up in shell history)."
)
@click.option(
    "--password-file", type=_path, help="File holding the MQTT password (copied into the config directory)."
)
@click.option("--ca-cert", type=_path, help="CA certificate (PEM) of the broker.")
@click.option("--client-cert", type=_path, help="Client certificate (PEM) for mutual TLS.")
@click.option("--client-key", type=_path, help="Client private key (PEM) for mutual TLS.")
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    metavar="NAME=SOURCE",
    help="Add a camera (or change its source); repeatable. SOURCE: /dev/video0, rtsp://..., a file.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set any config key; VALUE is a TOML value. Repeatable. E.g. "
    "--set 'cameras[north].analytics.lines=[{name=\"stop\", points=[[0,400],[1280,400]]}]'",
)
@click.option(
    "--token", help="Use this API token instead of generating one (e.g. one the hub already knows)."
)
@click.option("--rotate-token", is_flag=True, help="Write a new API token even if one exists.")
@click.option(
    "--output", type=_path, default=str(prov.DEFAULT_OUTPUT), show_default=True, help="Config file to write."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=str(prov.STATE_DIR),
    show_default=True,
    help="The agent's data directory (database, models, API token).",
)
@click.option("--token-file", type=_path, help="API token file [default: STATE_DIR/api-token].")
@click.option(
    "--dry-run", is_flag=True, help="Check everything and print the config (secrets masked); write nothing."
)
@click.option(
    "--restart/--no-restart",
    default=True,
    show_default=True,
    help="Restart edge-agent.service afterwards (when systemd runs and the unit is installed).",
)
def provision_cmd(
    bundle,
    site,
    device_id,
    broker,
    username,
    password,
    password_file,
    ca_cert,
    client_cert,
    client_key,
    cameras,
    sets,
    token,
    rotate_token,
    output,
    state_dir,
    token_file,
    dry_run,
    restart,
) -> None:
    """Write this unit's config (and API token) from a bundle and/or flags, after checking all of it.

    Nothing is written unless the whole config is valid: every problem names its key and the fix.
    The config is written atomically (mode 0640); certificates are copied next to it (certs/).
    """
    opts = prov.Options(
        bundle=bundle,
        site=site,
        device_id=device_id,
        broker=broker,
        username=username,
        password=password,
        password_file=password_file,
        ca_cert=ca_cert,
        client_cert=client_cert,
        client_key=client_key,
        cameras=list(cameras),
        sets=list(sets),
        token=token,
        rotate_token=rotate_token,
        output=output,
        state_dir=state_dir,
        token_file=token_file,
    )
    plan = prov.build(opts)
    for w in plan.warnings:
        click.echo(f"warning: {w}", err=True)
    if dry_run:
        click.echo(prov.render(plan, mask=True), nl=False)
        click.echo(f"# dry run: nothing written ({output} and {plan.token_file} untouched)", err=True)
        return
    _write_plan(plan, output, restart)


def _write_plan(plan: prov.Plan, output: Path, restart: bool) -> None:
    """Write the checked config and token, say what was written, restart the service if asked."""
    note = prov.owner_note()
    if note:
        click.echo(f"note: {note}", err=True)
    for line in prov.write(plan):
        click.echo(line)
    cfg = plan.config
    click.echo(
        f"ok: unit {cfg.device.site}/{cfg.device.id}, {len(cfg.cameras)} camera(s), {len(cfg.sensors)} sensor(s)"
    )
    if restart and output.resolve() == prov.DEFAULT_OUTPUT:
        what = prov.restart_service()
        if what:
            click.echo(what)
    click.echo("next: `edge-agent doctor` must report every check as ok before you leave the site")


@click.group("token")
def token_group() -> None:
    """Show or rotate the local API's bearer token."""


_token_file = click.option(
    "--file",
    "file",
    type=_path,
    default=None,
    help=f"Token file [default: ${tokens.TOKEN_ENV} or {tokens.DEFAULT_TOKEN_FILE}].",
)


@token_group.command("show")
@_token_file
def token_show(file: Path | None) -> None:
    """Print the API token (for a technician's laptop or the hub)."""
    click.echo(tokens.read(file))


@token_group.command("rotate")
@_token_file
def token_rotate(file: Path | None) -> None:
    """Replace the API token with a new one and print it; the old one stops working."""
    p = file or tokens.default_path()
    if not p.parent.is_dir():
        raise AgentError(
            f"cannot write the API token: directory {p.parent} does not exist",
            "install the agent first (scripts/install.sh) or pass --file",
        )
    click.echo(tokens.rotate(p))


commands = [provision_cmd, token_group, doctor_cmd]
