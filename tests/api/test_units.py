"""The small parts on their own: back-off arithmetic, time parameters, loopback rule, lights, port in use."""

from __future__ import annotations

import socket

import pytest

from agent.api.auth import Backoff
from agent.api.config import is_loopback
from agent.api.queries import QueryError, parse_since
from agent.api.status import lights, overall
from agent.config import parse_config
from agent.errors import AgentError


def test_backoff_doubles_up_to_the_cap_and_success_clears():
    now = [1000.0]
    b = Backoff(3, 10.0, 25.0, clock=lambda: now[0])
    assert [b.failure("a") for _ in range(2)] == [0.0, 0.0]
    assert b.failure("a") == 10.0 and b.blocked_for("a") == 10.0
    assert b.blocked_for("b") == 0.0  # per client address
    now[0] += 10.5
    assert b.blocked_for("a") == 0.0
    assert b.failure("a") == 20.0
    now[0] += 21
    assert b.failure("a") == 25.0  # capped
    b.success("a")
    assert b.blocked_for("a") == 0.0 and b.failure("a") == 0.0


@pytest.mark.parametrize(
    "host, loop",
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("unit.local", False),
    ],
)
def test_loopback_rule(host, loop):
    assert is_loopback(host) is loop


def test_since_parsing():
    now = 1_800_000_000.0
    assert parse_since("90s", now=now) == now - 90
    assert parse_since("2d", now=now) == now - 172800
    assert parse_since("99999w", now=now) == now - 400 * 86400  # clamped
    assert parse_since("2026-11-23T17:00:00Z") == parse_since("2026-11-23T18:00:00+01:00") == 1795453200.0
    assert parse_since("2026-11-23") == 1795392000.0
    assert parse_since("2026-02-30") == parse_since("2026-03-02")  # rolls over like mktime
    for bad in ("yesterday", "5 parsecs", "2026-13-01", ""):
        if bad:
            with pytest.raises(QueryError):
                parse_since(bad, now=now)


def test_lights_say_what_is_wrong():
    cfg = parse_config(
        {"cameras": [{"name": "a", "source": "x.mp4"}], "inference": {"accelerator": "edgetpu"}}
    )
    st = {
        "cameras": {"a": {"state": "down", "last_error": "cannot open x.mp4"}},
        "models": {"m": {"accelerator": "cpu", "reasons": ["no Edge TPU found"]}},
        "model_errors": {},
        "sensors": {"air": {"connected": False, "last_error": "port vanished"}},
        "sync": {
            "enabled": True,
            "connected": False,
            "broker": "hub:8883",
            "last_error": "refused",
            "backlog": 12,
        },
        "disk": {"free_bytes": 100 * 2**20, "free_pct": 2.0},
        "database": {"size_bytes": 10},
        "clock": {"synced": False, "gps": {"trusted": False, "offset_s": 42.0}},
    }
    ls = lights(st, cfg)
    assert ls["camera"] == {"state": "bad", "why": "a: down (cannot open x.mp4)"}
    assert (
        ls["accelerator"]["state"] == "warn"
        and ls["accelerator"]["why"] == "m on cpu (no Edge TPU)"
        and "no Edge TPU found" in ls["accelerator"]["detail"]
    )
    assert ls["sensors"]["state"] == "bad" and "port vanished" in ls["sensors"]["why"]
    assert ls["broker"]["state"] == "bad" and "backlog 12" in ls["broker"]["why"]
    assert ls["disk"]["state"] == "bad" and ls["clock"]["state"] == "bad" and "42.0" in ls["clock"]["why"]
    assert overall(ls) == "bad"


def test_port_in_use_is_a_clear_error(tmp_path):
    from agent.api.server import ApiServer

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        cfg = parse_config({"api": {"port": s.getsockname()[1]}})

        class _Pipe:
            pass

        with pytest.raises(AgentError, match="cannot listen on 127.0.0.1"):
            ApiServer(cfg, _Pipe()).start()
    finally:
        s.close()


def test_docs_describe_every_route_and_command():
    from agent.api.cli import commands
    from agent.api.server import ApiServer
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "api.md").read_text()
    app = ApiServer(parse_config({}), object()).app.app  # inside the access middleware
    for path in app.openapi()["paths"]:
        assert f"`GET {path}" in doc, path
    for cmd in commands:
        assert cmd.help and f"edge-agent {cmd.name}" in doc
