"""The API token file: generated once, 0600, atomic, rotatable; and the `token` commands."""

from __future__ import annotations

import stat

import pytest

from agent.api import token as tokens
from agent.errors import AgentError


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_load_or_create_is_stable_and_private(tmp_path):
    p = tmp_path / "api-token"
    t1 = tokens.load_or_create(p)
    assert len(t1) >= 40 and mode(p) == 0o600
    assert tokens.load_or_create(p) == t1
    assert list(tmp_path.iterdir()) == [p]  # no temp files left behind


def test_rotate_replaces(tmp_path):
    p = tmp_path / "api-token"
    t1 = tokens.load_or_create(p)
    t2 = tokens.rotate(p)
    assert t2 != t1 and tokens.read(p) == t2 and mode(p) == 0o600


def test_loose_mode_is_tightened_and_empty_file_regenerated(tmp_path):
    p = tmp_path / "api-token"
    p.write_text("abcdefghijklmnopqrstuvwxyz\n")
    p.chmod(0o644)
    assert tokens.load_or_create(p) == "abcdefghijklmnopqrstuvwxyz"
    assert mode(p) == 0o600
    p.write_text("")
    assert len(tokens.load_or_create(p)) >= 40


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(AgentError, match="no API token") as e:
        tokens.read(tmp_path / "missing")
    assert "token rotate" in e.value.hint
    with pytest.raises(AgentError, match="16-256"):
        tokens.check("short")
    with pytest.raises(AgentError, match="does not exist"):
        tokens.write(tmp_path / "no-such-dir" / "t", tokens.generate())


def test_cli_show_and_rotate(cli, tmp_path):
    p = tmp_path / "api-token"
    r = cli("token", "show", "--file", str(p))
    assert r.returncode != 0 and "no API token" in r.stderr and "fix:" in r.stderr
    r = cli("token", "rotate", "--file", str(p))
    assert r.returncode == 0, r.stderr
    new = r.stdout.strip()
    assert mode(p) == 0o600
    r = cli("token", "show", env={"EDGE_AGENT_TOKEN_FILE": str(p)})
    assert r.returncode == 0 and r.stdout.strip() == new
