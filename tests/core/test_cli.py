"""The entry point lists every command without importing it, and the list matches the modules."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from agent.cli import COMMANDS, cli
from tests.conftest import ROOT


def test_the_command_table_matches_the_modules():
    """Each table entry names a command its loader really provides, with that command's own help;
    and every command a module provides is in the table (a new command cannot be left out)."""
    ctx = click.Context(cli)
    loaders = {loader for _, loader in COMMANDS.values()}
    provided = {c.name: c for loader in loaders for c in loader()}
    assert set(provided) == set(COMMANDS), set(provided) ^ set(COMMANDS)
    for name, (short, _) in COMMANDS.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is provided[name]
        assert short == cmd.get_short_help_str(10**6), f"{name}: the table's help is stale"
    assert cli.get_command(ctx, "no-such-command") is None


def test_help_and_a_typo_import_no_command_module():
    code = """
import json, sys
from agent.cli import cli
for args in (["--help"], ["--version"], ["no-such-command"]):
    try:
        cli.main(args, prog_name="edge-agent", standalone_mode=True)
    except SystemExit:
        pass
heavy = [m for m in ("numpy", "cv2", "pydantic", "agent.config", "agent.core_cli", "paho", "fastapi")
         if m in sys.modules]
print(json.dumps(heavy))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Commands:" in r.stdout and "simulate-serial" in r.stdout
    assert "No such command 'no-such-command'" in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def test_a_command_still_runs_through_the_table(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "aqi", "--pm25", "35.4"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert "100" in r.stdout


def test_every_command_is_declared_by_its_part_or_by_the_entry_point():
    """Each part declares its commands (``Part.commands``); the entry point lists exactly those plus
    its own (daemon, dump, privacy, hub), with the same help lines, and no name twice."""
    from agent import cli as entry
    from agent.clispec import CommandSpec, table
    from agent.parts import PARTS

    declared: dict[str, str] = {}
    for part in PARTS:
        for spec in part.commands():
            assert isinstance(spec, CommandSpec)
            assert spec.name not in declared, f"{spec.name} declared twice"
            declared[spec.name] = part.name
            assert COMMANDS[spec.name][0] == spec.help
    own = {s.name for s in (*entry.DAEMON, *entry.DUMP, *entry.PRIVACY, *entry.HUB)}
    assert not own & set(declared)
    assert set(COMMANDS) == own | set(declared)
    assert declared["outbox"] == "sync" and declared["detect"] == "cameras"
    assert declared["simulate-serial"] == "sensors" and declared["doctor"] == "service"

    with pytest.raises(ValueError, match="two `edge-agent run` commands"):
        table([(entry.DAEMON, entry._core), ((CommandSpec("run", "again"),), entry._core)])
