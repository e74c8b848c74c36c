"""The technician commands, the config section, the schema and the summary section."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import serial

from agent.config import parse_config
from agent.errors import ConfigError
from agent.store.db import Database
from agent.timefmt import iso_utc
from firmware_bridge import summary
from firmware_bridge.drivers import make_driver, pms5003, sds011
from firmware_bridge.events import Q_WARMING_UP
from firmware_bridge.store import write_settings

from .test_drivers import GGA, PMS_FRAME, RMC


def test_decode_file_and_stdin(cli, tmp_path):
    cap = tmp_path / "cap.bin"
    cap.write_bytes(b"\x01\x02" + PMS_FRAME + PMS_FRAME[:20] + PMS_FRAME)
    r = cli("sensors", "decode", "--driver", "pms5003", str(cap))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["type"] for x in lines] == ["error", "reading", "error", "reading"]
    assert lines[0] == {"type": "error", "reason": "garbage", "offset": 0, "length": 2}
    assert lines[1]["pm"]["pm2_5"] == 11 and lines[1]["offset"] == 2
    assert lines[2]["reason"] == "truncated" and lines[2]["offset"] == 34
    r = cli("sensors", "decode", "--driver", "nmea", "-", input=GGA + b"\xb5\x62zz" + RMC[:-5])
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["type"] == "gga" and lines[0]["satellites"] == 8
    assert lines[-1]["type"] == "error" and lines[-1]["reason"] == "truncated"


def test_readings_command(cli, tmp_path):
    db_path = tmp_path / "a.sqlite"
    db = Database(db_path)
    now = time.time()
    rows = [
        (iso_utc(now - 7200), "pm", "pm2_5", 3.0, "ug/m3", 0),
        (iso_utc(now - 10), "pm", "pm2_5", 12.0, "ug/m3", Q_WARMING_UP),
        (iso_utc(now - 5), "gps", "gps_satellites", 9.0, "count", 0),
    ]
    db.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
    )
    db.close()
    r = cli("readings", "--db", str(db_path), "--json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(g["sensor"], g["value"], g["quality"]) for g in got] == [
        ("pm", 12.0, ["warming_up"]),
        ("gps", 9.0, []),
    ]
    r = cli("readings", "--db", str(db_path), "--since", "3h", "--sensor", "pm")
    assert r.returncode == 0 and r.stdout.count("pm2_5") == 2 and "[warming_up]" in r.stdout
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\npath = "{db_path}"\n')
    r = cli("readings", "--config", str(cfg), "--since", "1m", "--json")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2
    r = cli("readings", "--db", str(tmp_path / "missing.sqlite"))
    assert r.returncode != 0 and "does not exist" in r.stderr and "fix:" in r.stderr
    r = cli("readings", "--db", str(db_path), "--since", "yesterday")
    assert r.returncode != 0 and "30m" in r.stderr


def test_simulate_serial_command_is_readable_with_pyserial(tmp_path):
    link = tmp_path / "ttySDS"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "simulate-serial",
            "--device",
            "sds011",
            "--link",
            str(link),
            "--rate",
            "50",
            "--noise",
            "0",
            "--duration",
            "20",
            "--seed",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 10
        while not link.exists() and time.monotonic() < end:
            time.sleep(0.05)
        with serial.Serial(str(link), 9600, timeout=0.2, exclusive=True) as ser:
            d = make_driver("sds011")
            got = []
            while len([e for e in got if getattr(e, "kind", "") == "reading"]) < 5 and time.monotonic() < end:
                got += d.feed(ser.read(64))
            ser.write(sds011.command(sds011.FIRMWARE))
            t = time.monotonic() + 3
            while not any(getattr(e, "kind", "") == "reply" for e in got) and time.monotonic() < t:
                got += d.feed(ser.read(64))
        assert sum(1 for e in got if getattr(e, "kind", "") == "reading") >= 5
        assert any(getattr(e, "kind", "") == "reply" and e.fields["command"] == 7 for e in got)
    finally:
        proc.terminate()
        proc.wait(10)
    assert "simulating sds011" in proc.stderr.read()


def test_sensor_config_section():
    cfg = parse_config(
        {
            "sensors": [
                {"name": "pm", "driver": "pms7003", "port": "/dev/ttyUSB0"},
                {"name": "radar", "driver": "ops243", "port": "/dev/ttyACM0", "init_commands": ["UK"]},
            ]
        }
    )
    assert cfg.sensors[0].effective_baud == 9600 and cfg.sensors[1].effective_baud == 19200
    with pytest.raises(ConfigError, match=r"sensors\[0\].bauds: unknown key"):
        parse_config({"sensors": [{"name": "pm", "driver": "pms5003", "port": "/dev/x", "bauds": 9600}]})
    # a dump of the config carries each driver's own keys (config hash, redacted config, reparse)
    dumped = cfg.model_dump(mode="json")["sensors"]
    assert dumped[1]["init_commands"] == ["UK"] and parse_config({"sensors": dumped}).sensors == cfg.sensors
    other = parse_config({"sensors": [dumped[0], {**dumped[1], "init_commands": ["UM"]}]})
    assert other.config_hash() != cfg.config_hash()
    # each driver takes only its own keys: another driver's key names the driver it belongs to
    assert type(cfg.sensors[1]).__name__ == "Ops243Config" and cfg.sensors[1].init_commands == ["UK"]
    with pytest.raises(ConfigError, match=r"sensors\[0\]: 'warmup_s' is not a setting of the nmea driver"):
        parse_config({"sensors": [{"name": "gps", "driver": "nmea", "port": "/dev/x", "warmup_s": 0}]})
    with pytest.raises(
        ConfigError, match=r"'init_commands' is not a setting of the mcu driver \(it is one of ops243\)"
    ):
        parse_config({"sensors": [{"name": "m", "driver": "mcu", "port": "/dev/x", "init_commands": []}]})
    with pytest.raises(ConfigError, match=r"sensors\[0\].stopbits: 3: stopbits must be 1, 1.5 or 2"):
        parse_config({"sensors": [{"name": "pm", "driver": "pms5003", "port": "/dev/x", "stopbits": 3}]})
    with pytest.raises(ConfigError, match=r"sensors\[0\].driver"):
        parse_config({"sensors": [{"name": "pm", "driver": "bme280", "port": "/dev/x"}]})
    with pytest.raises(ConfigError, match="reconnect_max_s"):
        parse_config(
            {"sensors": [{"name": "pm", "driver": "sds011", "port": "/dev/x", "reconnect_max_s": 0.1}]}
        )
    with pytest.raises(ConfigError, match="working_period_min"):
        parse_config(
            {"sensors": [{"name": "pm", "driver": "sds011", "port": "/dev/x", "working_period_min": 5}]}
        )
    with pytest.raises(ConfigError, match="poll_interval_s"):
        parse_config(
            {
                "sensors": [
                    {
                        "name": "pm",
                        "driver": "sds011",
                        "port": "/dev/x",
                        "mode": "passive",
                        "poll_interval_s": 20,
                    }
                ]
            }
        )
    with pytest.raises(ConfigError, match="duplicate name"):
        parse_config(
            {
                "sensors": [
                    {"name": "a", "driver": "nmea", "port": "/x"},
                    {"name": "a", "driver": "nmea", "port": "/y"},
                ]
            }
        )


def test_schema_and_summary_with_nowcast_and_gps(db_path):
    db = Database(db_path)
    assert ("sensors", 1) in {
        (c, v) for c, v in db.conn.execute("SELECT component, version FROM _migrations")
    }
    end_t = (time.time() // 3600) * 3600 + 600  # 10 minutes into the current UTC hour
    hour = end_t - 600
    rows = []
    for h in range(12):  # hourly PM2.5 with a reading in 50 minutes of each hour: 40 in the latest, 20 before
        for minute in range(50):
            t = hour - (h + 1) * 3600 + minute * 60 + 5
            rows.append((iso_utc(t), "pm", "pm2_5", 40.0 if h == 0 else 20.0, "ug/m3", 0))
    rows += [
        (iso_utc(end_t - 40), "pm", "pm2_5", 40.0, "ug/m3", 0),
        (iso_utc(end_t - 30), "pm", "pm2_5", 900.0, "ug/m3", Q_WARMING_UP),  # flagged: left out of the stats
        (iso_utc(end_t - 20), "gps", "gps_fix_quality", 1.0, "code", 0),
        (iso_utc(end_t - 20), "gps", "clock_offset_s", -7200.0, "s", 0),
    ]
    db.conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
    )
    start, end = iso_utc(end_t - 300), iso_utc(end_t)
    # what the sensor service records at start: the section reads it from the database, no global
    write_settings(db.conn, "pm", {"aqi_table": "epa-2024", "aqi_nowcast": True}, end_t)
    s = summary.sensors_section(db.conn, start, end)
    g = summary.gps_section(db.conn, start, end)
    pm = s["pm"]["metrics"]["pm2_5"]
    assert (pm["count"], pm["flagged"], pm["mean"], pm["max"], pm["last"]) == (2, 1, 40.0, 40.0, 40.0)
    # NowCast over the 12 complete hours: w = 0.5; (40 + 20*(0.5 + ... + 0.5^11)) / (1 + ... + 0.5^11) = 30.0 -> AQI 90
    a = s["pm"]["aqi"]
    cur = a["current"]
    assert (
        a["table"] == "epa-2024" and cur["basis"] == "nowcast" and cur["pm2_5"] == 30.0 and cur["aqi"] == 90
    )
    assert cur["category"] == "Moderate" and cur["color"] == "#ffff00" and cur["hours_valid"] == {"pm2_5": 12}
    assert cur["from"] == iso_utc(hour - 12 * 3600) and cur["to"] == iso_utc(hour)
    assert a["daily"]["basis"] == "24h_mean"  # yesterday (UTC) has at most 11 of 24 hours here
    assert g == {
        "sensor": "gps",
        "fix_quality": 1.0,
        "satellites": None,
        "hdop": None,
        "latitude": None,
        "longitude": None,
        "clock_offset_s": -7200.0,
        "clock_trusted": False,
    }
    assert summary.sensors_section(db.conn, iso_utc(0), iso_utc(1)) is None
    # the same data with the settings another config records: the window mean, the tighter tolerance
    write_settings(db.conn, "pm", {"aqi_table": "epa-2012", "aqi_nowcast": False}, end_t)
    write_settings(db.conn, "gps", {"clock_tolerance_s": 10000.0}, end_t)
    again = summary.sensors_section(db.conn, start, end)["pm"]["aqi"]
    assert again["table"] == "epa-2012" and again["current"]["basis"] == "window_mean"
    assert again["current"]["pm2_5"] == 40.0
    assert summary.gps_section(db.conn, start, end)["clock_trusted"] is True
    db.close()


def test_pms_warmup_flag():
    class Opt:
        warmup_s = 60.0
        mode = "active"

    d = make_driver("pms5003", Opt())
    (m,) = [e for e in d.feed(pms5003.encode_frame({"pm2_5": 5})) if hasattr(e, "measurements")]
    assert all(x.quality & Q_WARMING_UP for x in m.measurements)
