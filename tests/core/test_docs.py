"""The docs stay true: the README's config reference is the generated example; every command is documented."""

from __future__ import annotations

import re

import click

from agent.cli import cli
from agent.config import example_config
from tests.conftest import ROOT


def test_readme_config_reference_is_the_generated_example():
    readme = (ROOT / "README.md").read_text()
    m = re.search(
        r"<!-- config-example:start -->\n```toml\n(.*?)```\n<!-- config-example:end -->", readme, re.S
    )
    assert m, "README has no generated config reference"
    assert m.group(1) == example_config(), (
        "README's config reference is stale: regenerate it from `edge-agent config example`"
    )


def _commands(group: click.Group, prefix: str = ""):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the top level imports a command's module on demand
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"command {prefix}{name} is listed but does not load"
        full = f"{prefix}{name}"
        yield full, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, full + " ")


def test_every_command_has_help_and_is_documented():
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing_help = [n for n, c in _commands(cli) if not (c.help or c.short_help)]
    assert not missing_help, f"commands without help text: {missing_help}"
    top = [n for n, _ in _commands(cli) if " " not in n]
    undocumented = [n for n in top if f"edge-agent {n}" not in docs and f"`{n}`" not in docs]
    assert not undocumented, f"commands missing from README/docs: {undocumented}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in ci
