"""`edge-agent privacy report`: what is stored and what leaves; exit 1 when a limit is exceeded."""

from __future__ import annotations

import json
import time

from agent.store.db import Database
from agent.timefmt import iso_utc


def _unit(tmp_path, privacy: str, age_h: float = 0.0, cameras: str = ""):
    db_path = tmp_path / "agent.sqlite"
    db = Database(db_path)
    db.conn.execute("BEGIN")
    for k, ts in enumerate((time.time() - age_h * 3600, time.time() - 60)):
        db.conn.execute(
            "INSERT INTO detections (ts, camera, frame, model, label, class_id, score, x1, y1, x2, y2)"
            " VALUES (?, 'door', ?, 'm', 'person', 0, 0.9, 1, 2, 3, 4)",
            (iso_utc(ts), k),
        )
    db.conn.execute("COMMIT")
    db.conn.close()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[storage]\npath = "{db_path}"\n[privacy]\n{privacy}\n{cameras}')
    return cfg


def test_images_enabled_and_retention_exceeded_are_both_reported_and_fail(cli, tmp_path):
    cfg = _unit(tmp_path, 'blur = "off"\n[privacy.limits]\nmax_raw_age_h = 24', age_h=50)
    r = cli("privacy", "report", "--config", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "fail  camera images are enabled without blur: snapshots served on 127.0.0.1:8754" in out
    assert (
        "fail  retention exceeded: the oldest raw row (detections," in out
        and "limit privacy.limits.max_raw_age_h = 24 h" in out
    )
    assert out.count("fix: ") >= 2 and "Traceback" not in r.stderr
    j = cli("privacy", "report", "--config", str(cfg), "--json")
    assert j.returncode == 1
    rep = json.loads(j.stdout)
    assert rep["ok"] is False and rep["images"]["snapshots_served"] and rep["images"]["blur"] == "off"
    assert rep["stored"]["raw"]["detections"]["rows"] == 2
    assert 49.9 < rep["stored"]["raw"]["detections"]["oldest_age_h"] < 50.1
    assert rep["retention"]["oldest_detection"] == rep["stored"]["raw"]["detections"]["oldest"]
    assert rep["retention"]["oldest_image"] is None and rep["stored"]["images"] == {}
    assert rep["leaves"]["never"][0] == "images" and rep["leaves"]["small_counts"]["mode"] == "merge"
    fails = [f["what"] for f in rep["findings"] if f["status"] == "fail"]
    assert len(fails) == 2


def test_within_limits_exits_zero_and_names_masks_and_blur(cli, tmp_path):
    cams = (
        '[[cameras]]\nname = "door"\nsource = "0"\n'
        '[[cameras.masks]]\nname = "window"\npoints = [[0, 0], [0.5, 0], [0.5, 0.5]]\nmode = "blur"\n'
    )
    cfg = _unit(tmp_path, 'blur = "faces"\n[privacy.limits]\nmax_raw_age_h = 24', age_h=2, cameras=cams)
    r = cli("privacy", "report", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "camera door: window (blur)" in r.stdout and "blur = faces" in r.stdout
    assert "oldest raw row: detections" in r.stdout


def test_forbidden_images_fail_even_when_blurred(cli, tmp_path):
    cfg = _unit(tmp_path, '[privacy.limits]\nimages = "forbidden"')
    r = cli("privacy", "report", "--config", str(cfg))
    assert r.returncode == 1 and "limit is images = forbidden" in r.stdout
    off = tmp_path / "off.toml"
    off.write_text(cfg.read_text().replace("[privacy]\n", "[privacy]\nsnapshots = false\n"))
    assert cli("privacy", "report", "--config", str(off)).returncode == 0


def test_doctor_includes_the_privacy_report(cli, tmp_path):
    cfg = _unit(tmp_path, 'blur = "off"\n[privacy.limits]\nmax_raw_age_h = 24', age_h=50)
    r = cli("doctor", "--config", str(cfg), "--only", "privacy", "--json")
    rep = json.loads(r.stdout)
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["privacy"]["status"] == "fail", checks
    assert (
        "retention exceeded" in checks["privacy"]["detail"] and "without blur" in checks["privacy"]["detail"]
    )
    assert r.returncode != 0


def test_a_bad_config_is_a_config_error(cli, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[privacy.small_counts]\nmode = "sometimes"\n')
    r = cli("privacy", "report", "--config", str(cfg))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "fix: " in r.stderr


def test_doctor_warns_when_the_face_model_is_missing(cli, tmp_path):
    cfg = _unit(tmp_path, 'blur = "faces"')
    cfg.write_text(cfg.read_text() + f'[models]\ndir = "{tmp_path / "models"}"\nauto_pull = false\n')
    r = cli("doctor", "--config", str(cfg), "--only", "privacy", "--json")
    check = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["privacy"]
    assert check["status"] == "warn", check
    assert "face model face_detection_short_range unavailable" in check["detail"]
    assert "edge-agent models pull face_detection_short_range" in check["hint"]
