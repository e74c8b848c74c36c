"""`edge-agent doctor` through the real CLI, against real parts: mosquitto (TLS, passwords, ACL),
simulated serial sensors on ptys, the mirror's clip and model. All green first; then each thing an
installer meets on a ladder (broker down, wrong password, missing camera, corrupt model, ...) must
be a failed check with a reason, and a non-zero exit."""

from __future__ import annotations

import json
import os
import pwd
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.service import tomlwrite
from firmware_bridge.simulator import Simulator
from tests.sync.mosquitto import Mosquitto, make_certs

USERS = {"unit-1": "pw-unit-1", "hub": "pw-hub"}
ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture(scope="module")
def rig(tmp_path_factory, mirror):
    """A broker with TLS, a PMS5003 and a GPS on ptys, and a models dir filled from the mirror once."""
    d = tmp_path_factory.mktemp("doctor")
    certs = make_certs(d / "certs")
    broker = Mosquitto(d / "broker", users=USERS, hub_users=["hub"], certs=certs).start()
    sims = [
        Simulator("pms5003", d / "ttyPM", seed=1, rate=5).start(),
        Simulator("nmea", d / "ttyGPS", seed=2).start(),
    ]
    try:
        yield {"dir": d, "broker": broker, "certs": certs, "mirror": mirror}
    finally:
        for s in sims:
            s.stop()
        broker.close()


def base_config(rig, tmp_path: Path, *, password: str = USERS["unit-1"], device: str = "unit-1") -> dict:
    pw = tmp_path / "mqtt.pass"
    pw.write_text(password + "\n")
    b = rig["broker"]
    return {
        "device": {"id": device, "site": "site-a"},
        "storage": {"path": str(tmp_path / "agent.sqlite"), "max_db_mb": 50},
        "models": {"dir": str(rig["dir"] / "models"), "mirror": str(rig["mirror"])},
        "inference": {"accelerator": "auto"},
        "cameras": [{"name": "street", "source": str(rig["mirror"] / "media" / "traffic_frames.mp4")}],
        "sensors": [
            {"name": "pm", "driver": "pms5003", "port": str(rig["dir"] / "ttyPM")},
            {"name": "gps", "driver": "nmea", "port": str(rig["dir"] / "ttyGPS")},
        ],
        "mqtt": {
            "enabled": True,
            "host": "127.0.0.1",
            "port": b.tls_port,
            "username": "unit-1",
            "password_file": str(pw),
            "tls": {"enabled": True, "ca_file": str(rig["certs"].ca)},
            "connect_timeout_s": 5,
        },
    }


def write(tmp_path: Path, cfg: dict, name: str = "config.toml") -> str:
    p = tmp_path / name
    p.write_text(tomlwrite.dumps(cfg))
    return str(p)


def doctor(cli, config: str, *args: str, timeout: float = 90):
    return cli("doctor", "--config", config, "--user", ME, *args, timeout=timeout)


def checks_of(r) -> dict[str, dict]:
    assert "Traceback" not in r.stderr, r.stderr
    rep = json.loads(r.stdout)
    return {c["name"]: c for c in rep["checks"]}


def test_all_green_against_real_broker_sensors_camera_and_model(rig, tmp_path, cli):
    cfg = write(tmp_path, base_config(rig, tmp_path))
    r = doctor(cli, cfg, "--json")
    checks = checks_of(r)
    bad = {
        n: (c["status"], c["detail"], c.get("hint"))
        for n, c in checks.items()
        if c["status"] != "ok" and n != "service"
    }
    assert not bad and r.returncode == 0, bad
    # systemd is not PID 1 on the test machine: the service check says so (the boot test runs it live)
    assert checks["service"]["status"] == "skip" and "systemd is not running" in checks["service"]["detail"]
    assert "XNNPACK" not in r.stderr, r.stderr  # LiteRT's stray INFO line is not part of the report
    rep = json.loads(r.stdout)
    assert rep["status"] == "ok" and rep["schema"] == "edge-agent/doctor/1" and rep["device"] == "unit-1"
    expected = {
        "config",
        "opencv",
        "camera:street",
        "model:ssd_mobilenet_v1_coco",
        "sensor:pm",
        "sensor:gps",
        "broker",
        "clock",
        "disk",
        "database",
        "service-user",
        f"perm:{rig['dir'] / 'ttyPM'}",
        f"perm:{rig['dir'] / 'ttyGPS'}",
    }
    assert expected <= set(checks), set(checks)
    assert (
        checks["camera:street"]["data"]["width"] == 960 and checks["camera:street"]["data"]["height"] == 540
    )
    m = checks["model:ssd_mobilenet_v1_coco"]
    assert m["data"]["accelerator"] == "cpu" and "sha256 ok" in m["detail"]
    assert (
        m["data"]["fallback_reasons"] and "edgetpu" in m["data"]["fallback_reasons"][0]
    )  # auto says what it skipped
    assert checks["sensor:pm"]["data"]["message"] == "reading" and "pm2_5" in checks["sensor:pm"]["detail"]
    assert "TLS" in checks["broker"]["detail"] and "user unit-1" in checks["broker"]["detail"]
    assert "GPS (gps)" in checks["clock"]["detail"]
    # the table: aligned, one line per check, overall line
    r = doctor(cli, cfg, "--only", "broker", "--only", "config", "--only", "disk")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    col = lines[0].index("STATUS")
    assert all(ln[col : col + 2] == "ok" for ln in lines[1:4]), r.stdout
    assert "OK: 3 ok, 0 warning(s), 0 failed, 0 skipped" in r.stdout


def test_broker_down_is_a_failure_with_the_reason(rig, tmp_path, cli):
    cfg = write(tmp_path, base_config(rig, tmp_path))
    rig["broker"].stop()
    try:
        r = doctor(cli, cfg, "--only", "broker")
    finally:
        rig["broker"].start()
    assert r.returncode == 1, r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("broker"))
    assert "FAIL" in line and "refused" in line and str(rig["broker"].tls_port) in line, r.stdout
    assert "fix: start the broker" in r.stdout


def test_wrong_password_names_bad_credentials(rig, tmp_path, cli):
    cfg = write(tmp_path, base_config(rig, tmp_path, password="not-the-password"))
    r = doctor(cli, cfg, "--only", "broker", "--json")
    c = checks_of(r)["broker"]
    assert r.returncode == 1 and c["status"] == "fail"
    assert "not authori" in c["detail"].lower() or "bad user name or password" in c["detail"].lower(), c
    assert "password" in c["hint"]
    # an untrusted broker certificate is its own clear reason
    cfgd = base_config(rig, tmp_path)
    cfgd["mqtt"]["tls"]["ca_file"] = str(rig["certs"].rogue_ca)
    c = checks_of(doctor(cli, write(tmp_path, cfgd, "rogue.toml"), "--only", "broker", "--json"))["broker"]
    assert c["status"] == "fail" and "not trusted" in c["detail"], c


def test_missing_cameras_fail_with_the_reason(rig, tmp_path, cli):
    cfgd = base_config(rig, tmp_path)
    cfgd["cameras"] = [
        {"name": "v4l", "source": "/dev/video99"},
        {"name": "clip", "source": str(tmp_path / "nope.mp4")},
        {"name": "off", "source": "/dev/video98", "enabled": False},
    ]
    r = doctor(cli, write(tmp_path, cfgd), "--only", "camera", "--json")
    c = checks_of(r)
    assert r.returncode == 1
    assert c["camera:v4l"]["status"] == "fail" and "/dev/video99 does not exist" in c["camera:v4l"]["detail"]
    assert "ls /dev/video" in c["camera:v4l"]["hint"]
    assert c["camera:clip"]["status"] == "fail" and "nope.mp4 does not exist" in c["camera:clip"]["detail"]
    assert c["camera:off"]["status"] == "skip"


def test_hung_cameras_cost_their_timeout_not_the_run(rig, tmp_path, cli):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)  # accepts, never answers: an RTSP camera that hangs (FFmpeg's own open timeout)
    fifo = tmp_path / "stuck.mp4"
    os.mkfifo(fifo)  # no writer: the reader waits for one outside OpenCV (an open would block for ever)
    cfgd = base_config(rig, tmp_path)
    cfgd["cameras"] = [
        {"name": "rtsp", "source": f"rtsp://user:secret@127.0.0.1:{srv.getsockname()[1]}/stream"},
        {"name": "stuck", "source": str(fifo)},
    ]
    try:
        t0 = time.monotonic()
        r = doctor(cli, write(tmp_path, cfgd), "--only", "camera", "--timeout", "2", "--json", timeout=40)
        took = time.monotonic() - t0
    finally:
        srv.close()
    c = checks_of(r)
    assert r.returncode == 1 and took < 15, (took, c)
    assert (
        c["camera:rtsp"]["status"] == "fail" and "cannot open rtsp://user:***@" in c["camera:rtsp"]["detail"]
    ), c
    assert (
        c["camera:stuck"]["status"] == "fail"
        and "nothing is writing to the FIFO" in c["camera:stuck"]["detail"]
    ), c
    assert "secret" not in r.stdout  # credentials in camera URLs are never printed


def test_corrupt_model_fails_naming_the_problem(rig, tmp_path, cli):
    models = tmp_path / "models"
    models.mkdir()
    (models / "ssd_mobilenet_v1_coco_quant.tflite").write_bytes(os.urandom(4096))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(os.urandom(2048))
    cfgd = base_config(rig, tmp_path)
    cfgd["models"]["dir"] = str(models)
    cfgd["cameras"].append({"name": "other", "source": cfgd["cameras"][0]["source"], "model": str(junk)})
    r = doctor(cli, write(tmp_path, cfgd), "--only", "model", "--json")
    c = checks_of(r)
    assert r.returncode == 1
    cat = c["model:ssd_mobilenet_v1_coco"]
    assert cat["status"] == "fail" and "sha256 mismatch" in cat["detail"] and "--force" in cat["hint"], cat
    path = c[f"model:{junk}"]
    assert path["status"] == "fail" and "not a TFLite model" in path["detail"], path
    # an explicit accelerator that this unit lacks is a failure, not a silent fallback
    cfgd = base_config(rig, tmp_path)
    cfgd["inference"]["accelerator"] = "edgetpu"
    c = checks_of(doctor(cli, write(tmp_path, cfgd, "tpu.toml"), "--only", "model", "--json"))[
        "model:ssd_mobilenet_v1_coco"
    ]
    assert c["status"] == "fail" and "edgetpu" in c["detail"] and "libedgetpu" in c["hint"], c


def test_sensor_problems_and_bad_database(rig, tmp_path, cli):
    cfgd = base_config(rig, tmp_path)
    cfgd["sensors"] = [
        {"name": "wrong", "driver": "sds011", "port": str(rig["dir"] / "ttyPM")},
        {"name": "gone", "driver": "pms5003", "port": str(tmp_path / "ttyNONE")},
    ]
    Path(cfgd["storage"]["path"]).write_bytes(b"this is not sqlite" * 300)
    r = doctor(
        cli, write(tmp_path, cfgd), "--only", "sensor", "--only", "database", "--timeout", "2", "--json"
    )
    c = checks_of(r)
    assert r.returncode == 1
    assert c["sensor:wrong"]["status"] == "fail" and "no valid sds011 frame" in c["sensor:wrong"]["detail"]
    assert "baud" in c["sensor:wrong"]["hint"]
    assert c["sensor:gone"]["status"] == "fail" and "does not exist" in c["sensor:gone"]["detail"]
    assert c["database"]["status"] == "fail" and "not a valid SQLite" in c["database"]["detail"], c[
        "database"
    ]


def test_invalid_config_is_a_failed_check_not_a_traceback(tmp_path, cli):
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nmax_db_mb = -1\n")
    r = cli("doctor", "--config", str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        r.stdout.startswith("CHECK")
        and "config" in r.stdout
        and "FAIL" in r.stdout
        and "max_db_mb" in r.stdout
    )
    r = cli("doctor", "--config", str(bad), "--only", "nonsense")
    assert r.returncode == 2 and "unknown check 'nonsense'" in r.stderr


def _subscribe(broker, topic: str):
    got: list[paho.MQTTMessage] = []
    ev = threading.Event()
    c = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-hub", protocol=paho.MQTTv5
    )
    c.username_pw_set("hub", USERS["hub"])
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, u, m: (got.append(m), ev.set())
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c, got, ev


def test_publish_sends_the_retained_report(rig, tmp_path, cli):
    cfg = write(tmp_path, base_config(rig, tmp_path))
    r = doctor(cli, cfg, "--publish", "--only", "broker", "--only", "config")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "published the report to city/site-a/unit-1/doctor" in r.stdout and "PUBACK" in r.stdout
    c, got, ev = _subscribe(
        rig["broker"], "city/site-a/unit-1/doctor"
    )  # subscribed after: only a retained copy arrives
    try:
        assert ev.wait(10), "no retained report"
    finally:
        c.loop_stop()
        c.disconnect()
    msg = got[0]
    assert msg.retain and msg.qos == 1
    rep = json.loads(msg.payload)
    assert rep["schema"] == "edge-agent/doctor/1" and rep["device"] == "unit-1" and rep["site"] == "site-a"
    assert rep["status"] == "ok" and rep["config_hash"] and rep["agent_version"]
    assert [ch["name"] for ch in rep["checks"]] == ["config", "broker"]
    # a broker that refuses the report (ACL: unit-1 may not write another device's subtree) is reported
    cfg2 = write(tmp_path, base_config(rig, tmp_path, device="unit-9"), "other.toml")
    r = doctor(cli, cfg2, "--publish", "--only", "config")
    assert r.returncode == 1 and "not published" in r.stderr and "not authori" in r.stderr.lower(), (
        r.stdout + r.stderr
    )


def test_install_doc_shows_the_payload_doctor_sends(tmp_path, cli):
    import re

    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "install.md").read_text()
    block = re.search(r"The payload \(also what `--json` prints\):\n\n```json\n(.*?)```", doc, re.S)
    assert block, "install.md lost the doctor payload example"
    documented = json.loads(block.group(1))
    r = cli("doctor", "--config", write(tmp_path, {"device": {"id": "u1"}}), "--only", "disk", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    sent = json.loads(r.stdout)
    assert set(documented) == set(sent) and documented["schema"] == sent["schema"]
    assert set(documented["checks"][0]) <= set(sent["checks"][1]) | {"data"}
    assert "{prefix}/{site}/{device}/doctor" in doc
