"""Off loopback: the bearer token (missing, wrong, right, rotated), the back-off, nothing without it.

The agent listens on 0.0.0.0 (so it is off loopback), but every request in this test goes to
127.0.0.1: the rule is about where the API listens, not where a request comes from.
"""

from __future__ import annotations

import json
import stat
import time

import pytest

from tests.api.conftest import Agent, free_port, write_config
from tests.conftest import run_cli

ROUTES = [
    "/healthz",
    "/api/status",
    "/api/config",
    "/api/detections",
    "/api/results",
    "/api/counts",
    "/api/readings",
    "/api/outbox",
    "/api/incidents",
    "/api/snapshot/road.jpg",
    "/api/privacy",
    "/metrics",
    "/openapi.json",
    "/api/nothing",
]


@pytest.fixture(scope="module")
def exposed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exposed")
    port = free_port()
    token_file = tmp / "api-token"
    cfg = write_config(
        tmp,
        port,
        api=f'bind = "0.0.0.0"\ntoken_file = "{token_file}"\nmax_auth_failures = 4\n'
        "auth_backoff_s = 1.0\nauth_backoff_max_s = 4.0",
    )
    agent = Agent(cfg, port, tmp)
    agent.token_file = token_file
    try:
        agent.wait_up()
        yield agent
    finally:
        assert agent.stop() == 0


def _token(agent) -> str:
    return agent.token_file.read_text().strip()


def test_token_created_on_first_run_readable_only_by_the_agent(exposed):
    assert stat.S_IMODE(exposed.token_file.stat().st_mode) == 0o600
    assert len(_token(exposed)) >= 40


@pytest.mark.parametrize("path", ROUTES)
def test_nothing_works_without_the_right_token(exposed, path):
    good = _token(exposed)
    assert exposed.get("/api/status", token=good)[0] == 200  # start with no failures on record (4 allowed)
    code, headers, body = exposed.get(path)
    assert code == 401 and headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in json.loads(body)["detail"]
    code, _, body = exposed.get(path, token=good[:-1] + ("x" if good[-1] != "x" else "y"))
    assert code == 401 and "wrong token" in json.loads(body)["detail"]
    code, _, _ = exposed.get(path, headers={"Authorization": f"Basic {good}"})
    assert code == 401
    code, _, _ = exposed.get(path, token=good)  # success clears the failures above
    assert code == {"/api/snapshot/road.jpg": 404, "/api/nothing": 404}.get(path, 200)


def test_page_shell_is_open_but_holds_no_data(exposed):
    code, _, body = exposed.get("/")
    html = body.decode()
    assert code == 200 and '"token_required": true' in html and _token(exposed) not in html
    assert "cameras" not in html.split("const CONF")[1].split(";")[0]


def test_backoff_after_repeated_failures_refuses_even_the_right_token(exposed):
    good, bad = _token(exposed), "not-the-token-at-all-0123"
    assert exposed.get("/api/status", token=good)[0] == 200
    replies = [exposed.get("/api/status", token=bad) for _ in range(4)]
    assert [r[0] for r in replies] == [401] * 4
    assert (
        "retry-after" not in replies[2][1] and replies[3][1]["retry-after"] == "1"
    )  # the 4th failure starts it
    code, headers, body = exposed.get("/api/status", token=good)
    assert code == 429 and "too many failed token checks" in json.loads(body)["detail"]
    assert headers["retry-after"] == "1"
    time.sleep(1.1)
    # the period is over, but the record is not cleared: one more failure doubles it
    code, headers, _ = exposed.get("/api/status", token=bad)
    assert code == 401 and headers["retry-after"] == "2"
    time.sleep(1.1)
    assert exposed.get("/api/status", token=good)[0] == 429  # still within the 2 s
    time.sleep(1.0)
    st = exposed.json("/api/status", token=good)  # served again; success clears the record
    assert (
        st["api"]["auth_failures"] >= 5
        and st["api"]["auth_refused"] >= 2
        and st["api"]["token_required"] is True
    )
    assert exposed.get("/api/status", token=bad)[1].get("retry-after") is None


def test_rotation_takes_effect_without_restart(exposed):
    old = _token(exposed)
    r = run_cli("token", "rotate", "--file", str(exposed.token_file))
    assert r.returncode == 0, r.stderr
    new = r.stdout.strip()
    assert new != old and _token(exposed) == new
    assert exposed.get("/api/status", token=old)[0] == 401
    assert exposed.get("/api/status", token=new)[0] == 200
    assert run_cli("token", "show", "--file", str(exposed.token_file)).stdout.strip() == new


def test_console_status_uses_the_token_file(exposed):
    r = run_cli("status", "--config", str(exposed.cfg), "--json")
    st = json.loads(r.stdout)
    assert st["_source"] == "api" and st["running"] is True and st["api"]["token_required"] is True
