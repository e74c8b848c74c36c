"""`edge-agent export ngsi-ld` on a real run and on a filled sensor history: every entity passes the
Smart Data Models validator with --check-formats, ids are stable, hours with too little data are
marked."""

from __future__ import annotations

import json
import time

from agent.store.db import Database
from agent.timefmt import iso_utc
from tests.contract.ngsi import validate


def _export(cli, *args: str) -> list[dict]:
    r = cli("export", "ngsi-ld", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_export_of_a_real_run_validates_in_both_forms(recording, cli, tmp_path):
    _, db, cfg = recording
    norm = _export(cli, "--config", str(cfg), "--since", "1h")
    kv = _export(cli, "--config", str(cfg), "--since", "1h", "--form", "keyValues")
    assert [e["id"] for e in norm] == [e["id"] for e in kv]
    types = {e["type"] for e in kv}
    assert types == {"TrafficFlowObserved", "AirQualityObserved"}, types
    for form, es in (("normalized", norm), ("keyValues", kv)):
        r = validate(es, tmp_path, "--form", form) if form == "normalized" else validate(es, tmp_path)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        assert f"{len(es)} passed, 0 failed" in r.stdout
    tfo = [e for e in kv if e["type"] == "TrafficFlowObserved"]
    total = [e for e in tfo if e["id"].endswith(":all")]
    assert total and all(e["laneDirection"] in ("forward", "backward") for e in tfo)
    assert all(e["refDevice"] == "urn:ngsi-ld:Device:main-st:pole-7" for e in tfo)
    assert all(e["location"]["coordinates"] == [-0.1276, 51.5072] for e in tfo)
    assert any("occupancy" in e for e in total) and any("averageVehicleSpeed" in e for e in total)
    by_class = [e for e in tfo if "vehicleType" in e]
    assert {e["vehicleType"] for e in by_class} <= {"car", "lorry", "bus", "motorcycle", "bicycle"}
    # the class entities of a bin add up to its total
    for t in total:
        stem = t["id"][: -len(":all")]
        assert sum(e["intensity"] for e in by_class if e["id"].rsplit(":", 1)[0] == stem) == t["intensity"]
    # a fresh unit has no complete hour of PM data: the hours are there, marked, with no AQI
    aqo = [e for e in kv if e["type"] == "AirQualityObserved"]
    assert aqo and all(e["aqiBasis"] == "insufficient data" and "airQualityIndex" not in e for e in aqo)
    assert all(e["reliability"] < 0.75 for e in aqo)
    # the --db form (no config) finds the unit in the database
    via_db = _export(
        cli, "--db", str(db), "--since", "1h", "--form", "keyValues", "--type", "TrafficFlowObserved"
    )
    assert [e["id"] for e in via_db] == [e["id"] for e in tfo]  # same ids: re-sending is an upsert


def test_air_quality_hours_with_nowcast_and_a_missing_hour(tmp_path, cli):
    path = tmp_path / "agent.sqlite"
    db = Database(path)
    now = time.time()
    hour = now - now % 3600
    rows = []
    for h in range(1, 15):  # 14 complete hours; the 4th latest has only 20 minutes (invalid)
        minutes = 20 if h == 4 else 60
        for m in range(minutes):
            t = hour - h * 3600 + m * 60 + 2
            rows.append((iso_utc(t), "air", "pm2_5", 12.0 + h, "ug/m3", 0))
            rows.append((iso_utc(t), "air", "pm10", 30.0, "ug/m3", 0))
    db.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
    )
    db.close()
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[device]\nid = "pole-9"\nsite = "s"\nlatitude = 48.1\nlongitude = 11.5\n[storage]\npath = "{path}"\n'
        '[[sensors]]\nname = "air"\ndriver = "pms5003"\nport = "/dev/null"\n'
    )
    es = _export(cli, "--config", str(cfg), "--since", "6h", "--form", "keyValues")
    assert len(es) == 7, [e["id"] for e in es]  # the hours the last 6 h overlap, the current one too
    by_start = {e["dateObservedFrom"]: e for e in es}
    current = by_start[iso_utc(hour)]
    # the current hour: no reading yet, so no pm values; its NowCast uses the 2 of 3 latest valid hours
    assert "pm25" not in current and current["reliability"] == 0 and current["aqiBasis"] == "nowcast"
    assert (
        current["dateObserved"] <= iso_utc(time.time())
        and current["dateObservedTo"] == current["dateObserved"]
    )
    latest = by_start[iso_utc(hour - 3600)]
    # NowCast at the latest hour: hours 13, 14, 15, (16 missing), 17 ... w = 13/26 = 0.5
    assert (
        latest["pm25"] == 13.0 and latest["airQualityIndex"] > 50 and latest["airQualityLevel"] == "Moderate"
    )
    assert latest["aqiBasis"] == "nowcast" and latest["reliability"] == 1.0
    assert (
        latest["id"]
        == f"urn:ngsi-ld:AirQualityObserved:s:pole-9:air:{iso_utc(hour - 3600)[:19].replace('-', '').replace(':', '')}Z"
    )
    gap = by_start[iso_utc(hour - 4 * 3600)]
    assert "pm25" not in gap and "pm10" not in gap and gap["reliability"] == round(20 / 60, 3)
    r = validate(es, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    r = validate(_export(cli, "--config", str(cfg), "--since", "6h"), tmp_path, "--form", "normalized")
    assert r.returncode == 0, r.stdout[-3000:]


def test_export_errors_are_clear(cli, tmp_path):
    r = cli("export", "ngsi-ld", "--db", str(tmp_path / "nope.sqlite"))
    assert r.returncode == 5 and "error:" in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr
    r = cli("export", "ngsi-ld", "--db", str(tmp_path / "nope.sqlite"), "--since", "soon")
    assert r.returncode in (2, 5) and "Traceback" not in r.stderr
    path = tmp_path / "a.sqlite"
    Database(path).close()
    r = cli("export", "ngsi-ld", "--db", str(path), "--since", "soon")
    assert r.returncode == 2 and "fix:" in r.stderr
