"""Status lights an installer reads (issue #16, item 7): the lights computed from status documents,
and the installed `edge-agent status` piped into a file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from agent.api.status import lights
from agent.config import parse_config
from agent.store.db import Database

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))
DLOPEN = "edgetpu: cannot load libedgetpu.so.1: libedgetpu.so.1: cannot open shared object file: No such file or directory"


def _cfg(tmp_path):
    return parse_config({"storage": {"path": str(tmp_path / "a.sqlite")}})


def test_accelerator_light_is_short_with_the_details_one_click_away(tmp_path):
    st = {
        "models": {
            "ssd": {
                "accelerator": "cpu",
                "reasons": [DLOPEN, "gpu: no GPU delegate library found (tried libx.so)"],
            }
        }
    }
    lt = lights(st, _cfg(tmp_path))["accelerator"]
    assert lt["state"] == "ok"
    assert lt["why"] == "ssd on cpu (no Edge TPU, no GPU delegate)"
    assert "cannot open shared object file" in lt["detail"]


def test_sensor_light_does_not_flap_at_the_simulators_noise(tmp_path):
    cfg = _cfg(tmp_path)
    noisy_line = {"sensors": {"pm": {"connected": True, "frames_ok": 180, "frames_bad": 20}}}  # 10 %
    assert lights(noisy_line, cfg)["sensors"]["state"] == "ok"
    broken = {"sensors": {"pm": {"connected": True, "frames_ok": 60, "frames_bad": 40}}}
    assert lights(broken, cfg)["sensors"]["state"] == "warn"


def test_clock_and_disk_say_one_thing(tmp_path):
    st = {
        "clock": {"synced": False, "gps": {"trusted": True, "offset_s": 0.2}},
        "disk": {"free_bytes": 2**30, "free_pct": 50.0},
    }
    ls = lights(st, _cfg(tmp_path))
    assert ls["clock"]["state"] == "ok" and "GPS" in ls["clock"]["why"]
    assert ls["disk"]["why"].startswith("1024.0 MiB free (50.0 %)")


def test_piped_status_prints_words_not_glyphs(tmp_path):
    db = tmp_path / "a.sqlite"
    Database(db).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[storage]\npath = "{db}"\n\n[api]\nport = {port}\n')
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_CONFIG"}
    r = subprocess.run(
        [EDGE_AGENT, "status", "--config", str(cfg)], capture_output=True, text=True, timeout=60, env=env
    )
    assert "Traceback" not in r.stderr, r.stderr
    assert "●" not in r.stdout and "○" not in r.stdout, r.stdout
    first_words = {ln.split()[0] for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith(" " * 3)}
    assert first_words & {"OK", "WARN", "BAD", "OFF"}, r.stdout
    disk_line = [
        ln for ln in r.stdout.splitlines() if "disk" in ln and ln.split()[0] in ("OK", "WARN", "BAD")
    ]
    db_line = [ln for ln in r.stdout.splitlines() if ln.startswith("database:")]
    assert disk_line and db_line and disk_line[0].split("disk", 1)[1].strip() in db_line[0], r.stdout


def test_offline_status_never_shows_a_green_camera(tmp_path):
    from agent.api.status import offline_status

    db = Database(tmp_path / "a.sqlite")
    db.conn.execute(
        "INSERT INTO inference_stats (ts_start, ts_end, camera, model, accelerator, frames, fps, detections)"
        " VALUES ('2026-01-01T00:00:00.000Z', '2026-01-01T00:00:03.000Z', 'cam', 'ssd', 'cpu', 30, 10.0, 5)"
    )
    st = offline_status(
        db.conn, _cfg(tmp_path), tmp_path / "a.sqlite"
    )  # a partial last window, no cameras in cfg
    db.close()
    assert st["lights"]["camera"]["state"] != "ok", st["lights"]["camera"]
    assert "not running" in st["lights"]["camera"]["why"]
