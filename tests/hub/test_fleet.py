"""The fleet view: `edge-agent hub status` (table, JSON, exit status) and the page served by `edge-agent hub
serve`, in headless Chromium, on a hub database filled by the real ingest code (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.hub.db import HubDB
from agent.hub.fleet import today_start
from agent.hub.ingest import Ingestor
from agent.timefmt import iso_utc
from tests.hub.conftest import ROOT
from tests.sync.mosquitto import free_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "hub"


def _status(dev: str, state: str, session: int, **kw) -> bytes:
    return json.dumps({"state": state, "session": session, "device": dev, "site": "north", "ts": iso_utc(time.time()),
                       "summary_interval_s": 60, **kw}).encode()  # fmt: skip


def _summary(dev: str, seq: int, *, clock_synced: bool = True, cars: int = 5) -> bytes:
    day = today_start(time.time())
    start, end = (
        day.replace("T00:00:00", f"T00:{seq:02d}:00"),
        day.replace("T00:00:00", f"T00:{seq + 1:02d}:00"),
    )
    return json.dumps({
        "seq": seq, "session": 1, "device": dev, "site": "north", "ts": end, "window": {"start": start, "end": end},
        "clock_synced": clock_synced,
        "sections": {"analytics": {"cameras": {"c": {"volumes": {"main": {"in": {"car": cars}}}}}},
                     "sensors": {"aqi": {"pm": {"aqi": 42 + seq, "category": "Good"}}},
                     "health": {"outbox_backlog": seq * 10}},
    }).encode()  # fmt: skip


def fill(dsn: str) -> None:
    """unit-a: fine; unit-b: says online but silent for an hour; unit-c: offline (last will), clock not synced;
    unit-d: online with an open gap."""
    db = HubDB(dsn)
    now = time.time()
    old = Ingestor(db, "city", clock=lambda: now - 3600)
    new = Ingestor(db, "city", gap_grace_s=3600)
    old.ingest([("city/north/unit-b/status", _status("unit-b", "online", 1, accelerator="cpu"), False),
                ("city/north/unit-b/summary", _summary("unit-b", 1), False)])  # fmt: skip
    new.ingest(
        [
            ("city/north/unit-a/status", _status("unit-a", "online", 3, accelerator="edgetpu"), False),
            ("city/north/unit-a/summary", _summary("unit-a", 1, cars=7), False),
            ("city/north/unit-a/summary", _summary("unit-a", 2, cars=4), False),
            ("city/north/unit-c/status", _status("unit-c", "online", 2, accelerator="gpu"), False),
            ("city/north/unit-c/summary", _summary("unit-c", 1, clock_synced=False), False),
            (
                "city/north/unit-c/status",
                _status("unit-c", "offline", 2, reason="connection lost (last will)"),
                False,
            ),
            ("city/north/unit-d/status", _status("unit-d", "online", 1, accelerator="cpu"), False),
            ("city/north/unit-d/summary", _summary("unit-d", 1), False),
            ("city/north/unit-d/summary", _summary("unit-d", 4), False),
        ]
    )
    db.close()


def test_hub_status_lists_every_unit_and_flags_the_silent_and_the_untrusted(dsn, cli):
    fill(dsn)
    r = cli("hub", "status", "--dsn", dsn)
    assert r.returncode == 1, r.stderr  # something is flagged
    lines = {
        next(w for w in ln.split() if w.startswith("unit-")): ln
        for ln in r.stdout.splitlines()
        if " unit-" in ln
    }
    assert lines["unit-a"].startswith(" ") and "online" in lines["unit-a"] and "edgetpu" in lines["unit-a"]
    assert lines["unit-b"].startswith("!") and "SILENT" in lines["unit-b"] and "60 min ago" in lines["unit-b"]
    assert (
        lines["unit-c"].startswith("!")
        and "offline" in lines["unit-c"]
        and "CLOCK UNTRUSTED" in lines["unit-c"]
    )
    assert lines["unit-d"].startswith("!") and "2 missing" in lines["unit-d"]
    assert "4 unit(s): 3 online, 1 offline, 1 silent, 1 clock untrusted" in r.stdout
    doc = json.loads(cli("hub", "status", "--dsn", dsn, "--json").stdout)
    u = {x["device"]: x for x in doc["units"]}
    assert u["unit-a"]["today_count"] == 11 and u["unit-a"]["aqi"] == 44 and u["unit-a"]["backlog"] == 20
    assert (
        not u["unit-a"]["silent"] and u["unit-b"]["silent"] and not u["unit-c"]["silent"]
    )  # offline is not silent
    assert u["unit-c"]["clock_untrusted"] and u["unit-d"]["gaps_open"] == 1 and u["unit-d"]["missing"] == 2
    assert doc["totals"]["units"] == 4


def test_hub_status_errors_are_clear(tmp_path, cli):
    r = cli("hub", "status", "--dsn", f"sqlite:///{tmp_path / 'none.sqlite'}")
    assert (
        r.returncode == 5
        and "does not exist" in r.stderr
        and "fix:" in r.stderr
        and "Traceback" not in r.stderr
    )
    r = cli("hub", "status", "--dsn", "mysql://x/y")
    assert r.returncode == 2 and "unsupported database" in r.stderr and "Traceback" not in r.stderr
    r = cli("hub", "status", "--dsn", "postgresql://nobody@127.0.0.1:1/none")
    assert r.returncode == 5 and "cannot connect to PostgreSQL" in r.stderr and "Traceback" not in r.stderr
    r = cli("hub", "--dsn", f"sqlite:///{tmp_path / 'h.sqlite'}")
    assert r.returncode != 0 and "--broker is required" in r.stderr


def _wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert time.monotonic() < deadline, "hub serve did not listen"
            time.sleep(0.05)


def test_fleet_page_in_chromium(tmp_path, cli):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (Debian's package; no browser downloads)")
    from playwright.sync_api import sync_playwright

    dsn = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    fill(dsn)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "hub", "serve", "--dsn", dsn, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        _wait_port(port, proc)
        import httpx

        f = httpx.get(f"http://127.0.0.1:{port}/api/fleet", timeout=10).json()
        assert len(f["units"]) == 4 and f["totals"]["silent"] == 1
        r = cli("hub", "serve", "--dsn", dsn, "--port", str(port))
        assert r.returncode != 0 and "cannot listen" in r.stderr and "fix:" in r.stderr
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                         "--no-first-run", "--disable-background-networking"])  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 420})
                outside: list[str] = []
                page.on(
                    "request",
                    lambda q: None if q.url.startswith(f"http://127.0.0.1:{port}") else outside.append(q.url),
                )
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function(
                    "() => document.querySelectorAll('#units tr').length === 4", timeout=30_000
                )
                rows = page.eval_on_selector_all(
                    "#units tr", "rs => rs.map(r => [r.dataset.unit, r.className, r.innerText])"
                )
                assert rows[0][0] == "north/unit-b" and rows[0][1] == "silent" and "SILENT" in rows[0][2]
                flagged = {u: c for u, c, _ in rows}
                assert flagged["north/unit-c"] == "flag" and flagged["north/unit-a"] == ""
                assert "4 units" in page.inner_text("#totals")
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "hub-fleet-page.png"), full_page=True)
                assert not errors and not outside, (errors, outside)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_hub_commands_have_help_and_docs(cli):
    doc = (ROOT / "docs" / "fleet.md").read_text()
    for args in (["hub"], ["hub", "status"], ["hub", "serve"]):
        r = cli(*args, "--help")
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.split("Options:")[0].strip().splitlines()) >= 3, f"{args} has no description"
        assert f"edge-agent {' '.join(args)}" in doc
    for opt in (
        "--dsn",
        "--share",
        "--gap-grace",
        "--replay-retry",
        "--replay-retry-max",
        "--replay-rate",
        "--max-replay",
    ):
        assert f"`{opt}" in doc, opt
