"""The API of a real agent running on a real clip: status, data routes, snapshot, metrics, the page
in a real browser, the console commands with the daemon running and then stopped."""

from __future__ import annotations

import json
import re
import time

import cv2
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import run_cli


def _total_counts(agent) -> int:
    c = agent.json("/api/counts?since=1h&bin=15m")
    return sum(t["count"] for t in c["totals"])


def test_status_reports_cameras_models_sensors_sync_disk_clock(live_agent):
    st = live_agent.wait_for(
        lambda: (
            (s := live_agent.json("/api/status"))["cameras"]["road"].get("fps")
            and (s.get("sensors") or {}).get("air", {}).get("frames_ok")
            and s
        )
    )
    cam = st["cameras"]["road"]
    assert cam["state"] == "up" and cam["fps"] > 0 and cam["last_error"] is None
    assert cam["latency_p50_ms"] > 0 and cam["latency_p95_ms"] >= cam["latency_p50_ms"]
    assert cam["accelerator"] == "cpu" and cam["last_frame_age_s"] < 10
    assert st["models"]["ssd_mobilenet_v1_coco"]["accelerator"] == "cpu"
    assert st["sensors"]["air"]["connected"] is True
    assert st["sync"]["enabled"] is False and "backlog" in st["sync"]
    assert st["database"]["size_bytes"] > 0 and st["disk"]["free_bytes"] > 0
    assert st["clock"]["synced"] in (True, False)
    assert st["versions"]["agent"] == st["version"] and re.fullmatch(r"[0-9a-f]{12}", st["config_hash"])
    assert set(st["lights"]) == {"camera", "accelerator", "sensors", "broker", "disk", "clock"}
    assert st["lights"]["camera"]["state"] == "ok" and st["lights"]["broker"]["state"] == "off"
    assert st["api"]["token_required"] is False and st["api"]["privacy"] == "people"


def test_healthz_live_and_ready(live_agent):
    body = live_agent.json("/healthz?ready=true")
    assert body["live"] and body["ready"] and body["checks"]["cameras"] == {"road": "up"}


def test_counts_detections_readings_outbox(live_agent):
    assert live_agent.wait_for(lambda: _total_counts(live_agent) > 0, timeout=60)
    c = live_agent.json("/api/counts?since=2h&bin=5m&camera=road")
    assert c["bin_seconds"] == 300 and c["note"] is None
    assert {r["line"] for r in c["items"]} == {"main"} and {r["direction"] for r in c["items"]} <= {
        "toward",
        "away",
    }
    assert live_agent.json("/api/counts?camera=elsewhere")["items"] == []

    d = live_agent.json("/api/detections?camera=road&limit=50")["items"]
    assert 0 < len(d) <= 50 and all(x["camera"] == "road" for x in d)
    assert [x["id"] for x in d] == sorted(x["id"] for x in d)
    after = live_agent.json(f"/api/detections?after_id={d[-1]['id']}&limit=5")["items"]
    assert all(x["id"] > d[-1]["id"] for x in after)
    assert any(x["label"] == "car" and x["track_id"] is not None for x in d)

    r = live_agent.wait_for(lambda: live_agent.json("/api/readings?sensor=air&since=10m")["items"])
    assert {x["metric"] for x in r} >= {"pm2_5"} or len({x["metric"] for x in r}) > 1
    assert "air" in live_agent.json("/api/readings")["latest"]

    ob = live_agent.json("/api/outbox")
    assert ob["stats"]["pending"] >= 0 and isinstance(ob["items"], list) and ob["note"] is None


@pytest.mark.parametrize(
    "path, code",
    [
        ("/api/counts?bin=7x", 422),
        ("/api/counts?bin=10s", 422),
        ("/api/counts?since=yesterday", 422),
        ("/api/detections?limit=0", 422),
        ("/api/detections?camera=../etc", 422),
        ("/api/readings?after_id=-1", 422),
        ("/api/outbox?state=lost", 422),
        ("/api/incidents?limit=0", 422),
        ("/api/incidents/nope.jpg", 422),
        ("/api/incidents/" + "0" * 32 + ".jpg", 404),
        ("/api/snapshot/nope.jpg", 404),
        ("/api/nothing", 404),
    ],
)
def test_bad_requests_get_clear_4xx(live_agent, path, code):
    got, _, body = live_agent.get(path)
    assert got == code, body
    assert json.loads(body)["detail"]


def test_read_only_and_no_cors(live_agent):
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        code, headers, _ = live_agent.get(
            "/api/status",
            method=method,
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert code == 405 and headers["allow"] == "GET, HEAD"
        assert not any(h.startswith("access-control-") for h in headers)
    code, headers, _ = live_agent.get("/api/status", headers={"Origin": "http://evil.example"})
    assert code == 200 and not any(h.startswith("access-control-") for h in headers)
    # DNS rebinding: a page on another origin reaching 127.0.0.1 carries its own Host name
    code, _, body = live_agent.get("/api/status", headers={"Host": "evil.example:8754"})
    assert code == 421, body


def test_snapshot_is_the_latest_frame_with_overlays(live_agent, artifacts):
    code, headers, body = live_agent.get("/api/snapshot/road.jpg")
    assert code == 200 and headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (720, 1280, 3)
    assert headers["x-privacy"].startswith("people blurred")
    # the counting line (yellow, y=450) is drawn across the frame
    row = img[449:452, 100:1200].reshape(-1, 3).astype(int)
    yellow = (row[:, 2] > 180) & (row[:, 1] > 180) & (row[:, 0] < 100)
    assert yellow.mean() > 0.8
    code, _, small = live_agent.get("/api/snapshot/road.jpg?max_width=320")
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape[1] == 320
    (artifacts / "snapshot-road.jpg").write_bytes(body)


def test_metrics_prometheus_text(live_agent):
    from prometheus_client.parser import text_string_to_metric_families

    code, headers, body = live_agent.get("/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "edge_agent_camera_fps",
        "edge_agent_inference_latency_seconds",
        "edge_agent_camera_frames_dropped",
        "edge_agent_outbox_backlog",
        "edge_agent_mqtt_reconnects",
        "edge_agent_sensor_bad_frames",
        "edge_agent_sensor_reconnects",
        "edge_agent_health",
        "edge_agent_database_bytes",
    ):
        assert name in fams, name
    count = [s for s in fams["edge_agent_inference_latency_seconds"].samples if s.name.endswith("_count")]
    assert (
        count
        and count[0].labels == {"camera": "road", "model": "ssd_mobilenet_v1_coco"}
        and count[0].value > 0
    )
    bad = [s for s in fams["edge_agent_sensor_bad_frames"].samples if s.labels.get("sensor") == "air"]
    assert bad and bad[0].value >= 0


def test_openapi_document(live_agent):
    doc = live_agent.json("/openapi.json")
    paths = set(doc["paths"])
    assert {
        "/healthz",
        "/api/status",
        "/api/detections",
        "/api/counts",
        "/api/readings",
        "/api/outbox",
        "/api/snapshot/{camera}.jpg",
        "/metrics",
    } <= paths
    assert all(set(ops) == {"get"} for ops in doc["paths"].values())
    assert live_agent.get("/docs")[0] == 404  # no CDN-backed Swagger UI


def test_status_page_in_chromium_shows_snapshot_and_counts(live_agent, chromium, artifacts):
    from playwright.sync_api import sync_playwright

    assert live_agent.wait_for(lambda: _total_counts(live_agent) > 0, timeout=60)
    shot = artifacts / "status-page.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            outside: list[str] = []
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith((live_agent.base, "blob:", "data:")) else outside.append(r.url)
                ),
            )
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_agent.base + "/")
            page.wait_for_function(
                "() => { const i = document.querySelector('img[data-camera=\"road\"]');"
                " return i && i.dataset.loaded === '1' && i.naturalWidth > 0; }",
                timeout=30_000,
            )
            page.wait_for_function(
                "() => Number(document.getElementById('counts-total').textContent) > 0", timeout=30_000
            )
            page.wait_for_function(
                "() => document.getElementById('sensors').textContent.includes('pm2_5')", timeout=20_000
            )
            # the EPA AQI with its basis and category colour (a fresh unit: NowCast says what it lacks)
            assert "AQI now (nowcast)" in page.text_content("#sensors")
            assert "AQI daily (24h_mean)" in page.text_content("#sensors")
            assert page.locator("#sensors .aqi-swatch").count() == 2
            assert page.get_attribute("#light-camera", "data-state") == "ok"
            assert page.locator("#lights .light").count() == 6
            width = page.evaluate("document.querySelector('img[data-camera=\"road\"]').naturalWidth")
            assert width == 960
            assert int(page.text_content("#counts-total")) > 0
            assert page.locator("#chart rect[data-count]:not([data-count='0'])").count() >= 1
            time.sleep(1.5)  # one more refresh cycle, so the screenshot shows a settled page
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert not outside, outside  # self-contained: nothing but the unit itself is fetched
    assert shot.stat().st_size > 50_000


OPERATIONS = [
    "/healthz",
    "/api/status",
    "/api/config",
    "/api/detections",
    "/api/results",
    "/api/counts",
    "/api/readings",
    "/api/outbox",
    "/api/privacy",
    "/api/incidents",
    "/api/incidents/{incident_id}.jpg",
    "/api/snapshot/{camera}.jpg",
    "/metrics",
]


@pytest.fixture(scope="module")
def api_schema(live_agent):
    schema = schemathesis.openapi.from_url(live_agent.base + "/openapi.json")
    assert sorted(r.ok().path for r in schema.get_all_operations()) == sorted(OPERATIONS)
    return schema


@pytest.mark.parametrize("path", OPERATIONS)
def test_fuzz_from_own_openapi(api_schema, path):
    """Each operation, with requests generated from the document the agent serves: no 5xx, and
    status codes, content types and bodies as documented."""
    op = api_schema[path]["GET"]

    @given(case=op.as_strategy())
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case):
        case.call_and_validate(timeout=30)

    check()


def test_no_crash_after_fuzzing(live_agent):
    assert live_agent.proc.poll() is None
    assert "Traceback" not in live_agent.read_log()
    assert live_agent.json("/healthz")["live"] is True


#: console data commands run with the agent running, then stopped: their stderr names the source
CONSOLE = {
    "counts": ["counts", "--since", "1h", "--json"],
    "readings": [
        "readings",
        "--since",
        "1h",
        "--sensor",
        "air",
        "--metric",
        "pm2_5",
        "--limit",
        "100000",
        "--json",
    ],
    "outbox status": ["outbox", "status", "--json"],
    "outbox rows": ["outbox", "list", "--from", "1", "--limit", "1000"],
}
_SEEN: dict = {}


def _parallel(cmds: list[list[str]]) -> list:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda c: run_cli(*c, timeout=60), cmds))


def _console(cfg: str) -> dict:
    return dict(zip(CONSOLE, _parallel([[*c, "--config", cfg] for c in CONSOLE.values()])))


def test_console_commands_with_daemon_running(live_agent):
    cfg = str(live_agent.cfg)
    r = run_cli("status", "--config", cfg, timeout=60)
    assert r.returncode in (0, 1), r.stderr  # ok, or warn (this machine's clock may be unsynchronised)
    assert (
        "running; from the running agent (http://127.0.0.1" in r.stdout
        and "road" in r.stdout
        and "fps" in r.stdout
    )
    st = json.loads(run_cli("status", "--config", cfg, "--json").stdout)
    assert st["_source"] == "api" and st["running"] is True
    r = run_cli("tail", "--config", cfg, "--duration", "3", "--interval", "0.5", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert "tailing the running agent" in r.stderr
    kinds = {x["kind"] for x in rows}
    assert kinds == {"detection", "reading"}
    dets = [x["id"] for x in rows if x["kind"] == "detection"]
    assert (
        len(dets) > 5 and dets == sorted(dets) and len(set(dets)) == len(dets)
    )  # new rows arrived, none twice
    assert live_agent.wait_for(lambda: _total_counts(live_agent) > 0, timeout=60)
    out = _console(cfg)
    for name, r in out.items():
        assert r.returncode == 0, (name, r.stderr)
        assert f"{name} from the running agent ({live_agent.base})" in r.stderr, (name, r.stderr)
    assert sum(x["count"] for x in json.loads(out["counts"].stdout)["rows"]) > 0
    assert [json.loads(x)["sensor"] for x in out["readings"].stdout.splitlines()][:1] == ["air"]
    assert json.loads(out["outbox status"].stdout)["last_seq"] >= 0
    assert out["outbox rows"].stdout.startswith("     SEQ  KIND")
    _SEEN.update(out)


def test_console_commands_with_daemon_stopped(live_agent):
    cfg = str(live_agent.cfg)
    n_before = _total_counts(live_agent)
    assert live_agent.stop() == 0
    r = run_cli("status", "--config", cfg, timeout=60)
    assert r.returncode == 2
    assert (
        "NOT RUNNING" in r.stdout
        and "read-only; agent not reachable" in r.stdout
        and "Connection refused" in r.stdout
    )
    assert re.search(r"road\s+not running\s+fps \d", r.stdout)
    assert "air" in r.stdout  # last sensor health, from the database
    r = run_cli("tail", "--config", cfg, "--duration", "0", "-n", "3", timeout=60)
    assert r.returncode == 0 and "tailing the database" in r.stderr
    assert len([x for x in r.stdout.splitlines() if " det " in x]) == 3
    assert len([x for x in r.stdout.splitlines() if " reading " in x]) == 3
    out = _console(cfg)
    for name, r in out.items():
        assert r.returncode == 0, (name, r.stderr)
        assert (
            f"{name} from the database {live_agent.tmp / 'agent.sqlite'} (read-only; agent not reachable: nothing answers"
            in r.stderr
        )
    # the same data as the API gave while the agent ran, plus what it stored after that
    counts = {
        tuple(x[k] for k in ("bin_start", "camera", "line", "direction", "class")): x["count"]
        for x in json.loads(out["counts"].stdout)["rows"]
    }
    assert sum(counts.values()) >= n_before
    for x in json.loads(_SEEN["counts"].stdout)["rows"]:
        assert (
            counts[tuple(x[k] for k in ("bin_start", "camera", "line", "direction", "class"))] >= x["count"]
        )
    api_lines = _SEEN["readings"].stdout.splitlines()
    assert api_lines and out["readings"].stdout.splitlines()[: len(api_lines)] == api_lines
    api_st, db_st = json.loads(_SEEN["outbox status"].stdout), json.loads(out["outbox status"].stdout)
    assert set(api_st) == set(db_st) and db_st["last_seq"] >= api_st["last_seq"]
    api_lines = _SEEN["outbox rows"].stdout.splitlines()
    assert out["outbox rows"].stdout.splitlines()[: len(api_lines)] == api_lines


def test_console_commands_same_output_from_api_and_database(live_agent, tmp_path):
    """An idle agent (no camera, no sensor) serving a copy of the stopped agent's database: every data
    command gives byte-for-byte the same output through the API as from the file; replay notes that
    the publisher picks the rows up while the agent runs."""
    import sqlite3

    from agent.api.client import ApiSource, DbSource
    from agent.clihelp import load
    from agent.sync import outbox
    from tests.api.conftest import Agent, free_port, write_config

    assert live_agent.proc.poll() is not None  # after test_console_commands_with_daemon_stopped
    db = tmp_path / "agent.sqlite"
    src, dst = sqlite3.connect(live_agent.tmp / "agent.sqlite"), sqlite3.connect(db, isolation_level=None)
    src.backup(dst)
    src.close()
    dst.execute("BEGIN")
    for i in range(12):
        outbox.enqueue(dst, "city/main-st/pole-7/event", "event", {"i": i}, priority=0)
    last = outbox.state_value(dst, "last_seq")
    outbox.mark(dst, range(last - 11, last - 5), "delivered")  # i = 0..5
    dst.execute("COMMIT")
    health = dict(dst.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind")).get("health", 0)
    dst.close()
    port = free_port()
    cfg = write_config(
        tmp_path,
        port,
        "[summary]\ninterval_s = 86400\ncatchup_windows = 0\n[mqtt]\nhealth_interval_s = 86400\n",
    )
    idle = Agent(cfg, port, tmp_path)
    try:
        idle.wait_up()
        idle.wait_for(
            lambda: (
                idle.json("/api/outbox?kind=health")["stats"]["pending_by_kind"].get("health", 0) > health
            ),
            timeout=20,
        )
        runs = [
            ["counts", "--since", "2h", "--bin", "7m"],
            ["counts", "--since", "2h", "--bin", "1h", "--camera", "road", "--json"],
            ["readings", "--since", "1h"],
            ["readings", "--since", "1h", "--sensor", "air", "--metric", "pm2_5", "--json"],
            ["outbox", "status"],
            ["outbox", "status", "--json"],
            ["outbox", "list", "--kind", "event", "--limit", "9"],
            ["outbox", "list", "--state", "pending", "--kind", "event", "--from", str(last - 7), "--payload"],
        ]
        both = _parallel([[*a, "--config", str(cfg)] for a in runs] + [[*a, "--db", str(db)] for a in runs])
        for a, api, direct in zip(runs, both[: len(runs)], both[len(runs) :]):
            assert api.returncode == 0 and direct.returncode == 0, (a, api.stderr, direct.stderr)
            assert f"from the running agent ({idle.base})" in api.stderr, (a, api.stderr)
            assert f"from the database {db} (read-only; --db given)" in direct.stderr, (a, direct.stderr)
            assert api.stdout.strip(), a
            if a[0] == "counts" and "--json" in a:  # "since" is now minus 2h: the runs started apart
                assert {**json.loads(api.stdout), "since": 0} == {**json.loads(direct.stdout), "since": 0}
            else:
                assert api.stdout == direct.stdout, a
        assert len(both[2].stdout.splitlines()) > 100 and "pm2_5" in both[2].stdout  # the table, not JSON
        assert [json.loads(x)["i"] for x in both[7].stdout.splitlines()] == [6, 7, 8, 9, 10, 11]
        # pages: the API's routes cap `limit`; the client pages and gets what one database query gives
        api, dbs = ApiSource(idle.base, None), DbSource(load(str(cfg))[0], db, "test", unreachable=False)
        api.MAX_READINGS, api.MAX_OUTBOX = 10, 3
        for kw in (
            {"sensor": "air", "metric": "pm2_5", "since": "2h", "limit": 25},
            {"sensor": "air", "after_id": 5, "limit": 45},
        ):
            assert len(dbs.readings(**kw)) > 10
            assert api.readings(**kw) == dbs.readings(**kw), kw
        for kw in ({"limit": 10}, {"kind": "event", "from_seq": last - 9, "limit": 8, "payload": True}):
            assert api.outbox(**kw)["items"] == dbs.outbox(**kw)["items"], kw
        dbs.close()
        r = run_cli("counts", "--config", str(cfg), "--camera", "../etc")
        assert r.returncode == 2 and "names are letters" in r.stderr
        r = run_cli("outbox", "replay", "--config", str(cfg), "--from", str(last - 11), "--to", str(last - 9))
        assert r.returncode == 0 and "re-queued 3 message(s)" in r.stdout, r.stderr
        assert (
            f"the agent is running ({idle.base}); its publisher picks the re-queued messages up within ~10 s"
            in r.stdout
        )
    finally:
        idle.stop()
    r = run_cli("outbox", "replay", "--config", str(cfg), "--from", str(last - 8), "--to", str(last - 6))
    assert (
        r.returncode == 0 and "re-queued 3 message(s)" in r.stdout and "the agent is not running" in r.stdout
    ), r.stderr
