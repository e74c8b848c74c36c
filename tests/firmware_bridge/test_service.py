"""End to end through real pseudo-terminals and pyserial: simulator -> SensorService -> SQLite."""

from __future__ import annotations

import os
import time

import pytest

from agent.sections import summary_sections
from agent.store.db import Database
from agent.store.writer import Writer
from agent.timefmt import iso_utc
from firmware_bridge.config import SensorConfig
from firmware_bridge.service import SensorService
from firmware_bridge.simulator import Simulator


def wait_for(cond, timeout=8.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def store(db_path):
    db = Database(db_path)
    w = Writer(db, max_delay_s=0.05).start()
    yield db, w
    w.stop(5)
    db.close()


@pytest.fixture
def rig(tmp_path, store):
    """rig(device, sensor_options, sim_options) -> (sim, service, reader connection)."""
    made = []
    db, writer = store

    def make(device, sensor=None, **sim):
        link = tmp_path / f"ttySIM-{device}"
        s = Simulator(device, link, seed=7, rate=sim.pop("rate", 20), **sim).start()
        cfg = SensorConfig(
            name=device,
            driver=device,
            port=str(link),
            reconnect_initial_s=0.1,
            reconnect_max_s=0.5,
            **({"warmup_s": 0} if device.startswith("pms") else {}),
            **(sensor or {}),
        )
        svc = SensorService([cfg], writer)
        svc.start()
        made.append((s, svc))
        return s, svc, db.reader()

    yield make
    for s, svc in made:
        svc.stop(3)
        s.stop()


def test_the_service_records_each_sensors_summary_settings(store, tmp_path):
    """The summary's AQI table, NowCast and clock tolerance come from the database (no module
    global): the service records every sensor's at start, and a later config replaces them."""
    import json

    db, writer = store
    cfgs = [
        SensorConfig(name="pm", driver="pms5003", port=str(tmp_path / "ttyNONE"), aqi_table="epa-2012"),
        SensorConfig(name="gps", driver="nmea", port=str(tmp_path / "ttyNONE2"), clock_tolerance_s=0.5),
    ]
    SensorService(cfgs, writer)
    assert writer.flush(5)
    conn = db.reader()
    try:
        got = {n: json.loads(v) for n, v in conn.execute("SELECT sensor, settings FROM sensor_settings")}
    finally:
        conn.close()
    assert got["pm"] == {"aqi_table": "epa-2012", "aqi_nowcast": True, "clock_tolerance_s": 2.0}
    assert got["gps"]["clock_tolerance_s"] == 0.5
    SensorService([cfgs[0].model_copy(update={"aqi_nowcast": False})], writer)
    assert writer.flush(5)
    conn = db.reader()
    try:
        (v,) = conn.execute("SELECT settings FROM sensor_settings WHERE sensor = 'pm'").fetchone()
    finally:
        conn.close()
    assert json.loads(v)["aqi_nowcast"] is False


def count(conn, sensor, metric=None):
    sql, args = "SELECT COUNT(*) FROM readings WHERE sensor = ?", [sensor]
    if metric:
        sql, args = sql + " AND metric = ?", args + [metric]
    return conn.execute(sql, args).fetchone()[0]


@pytest.mark.parametrize(
    "device,sensor,metrics",
    [
        ("pms5003", {}, {"pm2_5", "pm10", "pm1_0_cf1", "count_0_3um"}),
        ("pms7003", {"mode": "passive", "poll_interval_s": 0.05}, {"pm2_5", "pm10"}),
        ("sds011", {"mode": "passive", "poll_interval_s": 0.05, "working_period_min": 0}, {"pm2_5", "pm10"}),
        (
            "nmea",
            {},
            {"latitude", "gps_fix_quality", "gps_satellites", "gps_hdop", "gps_pdop", "clock_offset_s"},
        ),
        ("ops243", {"init_commands": ["UK", "OJ"]}, set()),
        ("mcu", {"sample_interval_ms": 100}, {"noise_laeq", "temperature", "loop_count_1", "supply_voltage"}),
    ],
)
def test_device_through_pty_to_sqlite(rig, device, sensor, metrics):
    sim, svc, conn = rig(device, sensor, noise=0.15)
    wait_for(lambda: count(conn, device) > 30 and svc.health()[device]["frames_ok"] > 15, timeout=10)
    got = {r[0] for r in conn.execute("SELECT DISTINCT metric FROM readings WHERE sensor = ?", (device,))}
    assert metrics <= got, got
    h = svc.health()[device]
    assert h["connected"] and h["last_reading_ts"]
    assert h["frames_bad"] + h["resyncs"] > 0, h  # the noise was seen, counted and survived
    if device == "ops243":
        assert got <= {"speed_inbound", "speed_outbound"} and got
        assert b"UK\r\n" in sim.received and b"OJ\r\n" in sim.received
        (unit,) = {r[0] for r in conn.execute("SELECT DISTINCT unit FROM readings WHERE sensor='ops243'")}
        assert unit == "km/h"
    if device == "sds011":
        assert sim.model.query  # the service switched it to query mode and polls it
    if device == "pms7003":
        assert not sim.model.active
    if device == "nmea":
        c = svc.gps_clock()
        assert c["fix"] and c["trusted"] is True and abs(c["offset_s"]) < 2.0
    if device == "mcu":
        assert h["firmware"] == "1.4.2" and sim.model.interval_ms == 100


def test_unplug_replug_reconnects_and_continues(rig):
    sim, svc, conn = rig("pms5003", noise=0.0)
    wait_for(lambda: count(conn, "pms5003") > 24)
    first = svc.health()["pms5003"]["port_resolved"]
    for cycle in (1, 2):
        sim.unplug_now(0.4)
        wait_for(lambda: not svc.health()["pms5003"]["connected"])
        assert sim.unplugs == cycle
        wait_for(
            lambda c=cycle: (
                svc.health()["pms5003"]["reconnects"] >= c and svc.health()["pms5003"]["connected"]
            )
        )
        before = count(conn, "pms5003")
        wait_for(lambda b=before: count(conn, "pms5003") > b + 24)
    h = svc.health()["pms5003"]
    assert h["reconnects"] == 2 and sim.unplugs == 2
    # the pulled "device" surfaced as a read error or a missing path, never as an exception
    assert "read from" in h["last_error"] or "does not exist" in h["last_error"], h["last_error"]
    assert os.path.realpath(sim.pty.link) == h["port_resolved"] and first.startswith("/dev/pts/")


def test_stale_port_is_reopened(rig):
    sim, svc, conn = rig("sds011", {"stale_after_s": 0.5}, noise=0.0)
    wait_for(lambda: count(conn, "sds011") > 4)
    sim.model.asleep = True  # silent but the port stays open (a sensor that browned out)
    wait_for(lambda: svc.health()["sds011"]["reconnects"] >= 1, timeout=6)
    sim.model.asleep = False
    # at reconnect the service sends "work" again; readings resume
    before = count(conn, "sds011")
    wait_for(lambda: count(conn, "sds011") > before + 4)


def test_mcu_commands_ack_nack_retry_timeout(rig):
    sim, svc, conn = rig("mcu", {"command_timeout_s": 0.3, "command_retries": 2}, noise=0.0)
    wait_for(lambda: svc.health()["mcu"].get("firmware"))
    r = svc.command("mcu", "set_relay", relay=1, on=True)
    assert (r.status, r.attempts) == ("ack", 1) and sim.model.relays == [False, True]
    r = svc.command("mcu", "set_relay", relay=5, on=True)
    assert (r.status, r.reason) == ("nack", "out_of_range")
    r = svc.command("mcu", "set_interval", interval_ms=50)
    assert (r.status, r.reason) == ("nack", "out_of_range")
    # the MCU ignores the next command once: the host resends with the same seq and gets the ack
    sim.model.ignore_commands = 1
    n_seen = len(sim.model.commands_seen)
    r = svc.command("mcu", "set_interval", interval_ms=250)
    assert (r.status, r.attempts) == ("ack", 2) and sim.model.interval_ms == 250
    resends = sim.model.commands_seen[n_seen:]
    assert len(resends) == 2 and resends[0]["seq"] == resends[1]["seq"] == r.seq
    # an MCU that never answers: timeout after 1 + retries attempts
    sim.model.silent = True
    t0 = time.monotonic()
    r = svc.command("mcu", "reboot")
    assert (r.status, r.attempts) == ("timeout", 3) and 0.8 < time.monotonic() - t0 < 3
    sim.model.silent = False
    r = svc.command("mcu", "reboot")
    assert r.ok
    stats = svc.health()["mcu"]["commands"]
    assert stats["timeouts"] == 1 and stats["nacked"] == 2 and stats["resent"] >= 3


def test_readings_reach_the_summary(rig, store):
    start = iso_utc(time.time() - 1)
    sim, svc, conn = rig("sds011", {"aqi_table": "epa-2012"}, noise=0.0)
    wait_for(lambda: count(conn, "sds011", "pm2_5") >= 10)
    svc.workers["sds011"]._write_health()
    store[1].flush(5)
    end = iso_utc(time.time() + 1)
    section = summary_sections()["sensors"](conn, start, end)
    m = section["sds011"]["metrics"]["pm2_5"]
    rows = [
        r[0]
        for r in conn.execute(
            "SELECT value FROM readings WHERE sensor='sds011' AND metric='pm2_5'"
            " AND ts >= ? AND ts < ? ORDER BY ts, id",
            (start, end),
        )
    ]
    assert m["count"] == len(rows) and m["min"] == min(rows) and m["max"] == max(rows)
    assert m["mean"] == pytest.approx(sum(rows) / len(rows), abs=1e-3) and m["last"] == rows[-1]
    assert m["unit"] == "ug/m3"
    a = section["sds011"]["aqi"]
    # NowCast (the default) needs complete hours: a fresh sensor has none, so the AQI is marked missing
    assert a["table"] == "epa-2012" and a["current"]["basis"] == "nowcast" and a["current"]["aqi"] is None
    assert a["current"]["hours_valid"] == {"pm2_5": 0, "pm10": 0} and "2 of the 3" in a["current"]["missing"]
    assert a["daily"]["aqi"] is None and "18 of 24" in a["daily"]["missing"]
    assert section["sds011"]["health"]["connected"] is True and section["sds011"]["driver"] == "sds011"


def test_missing_port_backs_off_without_blocking(store, tmp_path):
    db, writer = store
    cfg = SensorConfig(
        name="gone", driver="nmea", port=str(tmp_path / "nope"), reconnect_initial_s=0.05, reconnect_max_s=0.2
    )
    svc = SensorService([cfg], writer)
    t0 = time.monotonic()
    svc.start()
    assert time.monotonic() - t0 < 0.5
    wait_for(lambda: "does not exist" in (svc.health()["gone"]["last_error"] or ""))
    before = svc.last_progress["gone"]
    wait_for(lambda: svc.last_progress["gone"] > before)  # the thread keeps looping (watchdog)
    svc.stop(2)
    assert not svc.health()["gone"]["connected"] and svc.health()["gone"]["frames_ok"] == 0


def test_port_is_opened_exclusively(rig):
    from firmware_bridge.transport import SerialTransport, TransportError

    sim, svc, conn = rig("nmea", noise=0.0)
    wait_for(lambda: svc.health()["nmea"]["connected"])
    other = SerialTransport(str(sim.pty.link), 9600)
    with pytest.raises(TransportError, match="cannot open"):
        other.open()
