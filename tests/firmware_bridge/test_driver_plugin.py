"""A sensor driver is one file: a throwaway plugin written to a temporary module works end to end.

The module below is written into ``tmp_path`` and imported from there; nothing else in the repo
knows it. It brings its own framing (``#t=21.5*XX\\n`` lines, XOR checksum), its own config key
(``scale``), its own simulator model and its registration. A real pty carries its frames (and bad
bytes) into the real SensorService, whose rows land in SQLite and come back from
``edge-agent readings --db``; the health row counts the bad frames.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
import textwrap
import time

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.store.db import Database
from agent.store.writer import Writer
from firmware_bridge.drivers import DRIVERS
from firmware_bridge.service import SensorService
from firmware_bridge.simulator import Simulator

PLUGIN = '''
"""Throwaway "blip" thermometer: ASCII lines ``#t=<celsius>*<xor of the payload, 2 hex>\\n``."""

from pydantic import Field

from firmware_bridge.drivers import register_driver
from firmware_bridge.drivers.base import DeviceModel, Driver, SensorConfig
from firmware_bridge.events import Measurement, Message


def frame(celsius: float) -> bytes:
    payload = f"t={celsius:.1f}".encode()
    x = 0
    for b in payload:
        x ^= b
    return b"#" + payload + f"*{x:02X}\\n".encode()


class BlipConfig(SensorConfig):
    scale: float = Field(1.0, gt=0, description="blip: readings are multiplied by this.")


class BlipModel(DeviceModel):
    interval_s = 0.05

    def tick(self) -> bytes:
        return frame(20.0 + self.rng.uniform(-1, 1))


class Blip(Driver):
    name = "blip"
    default_baud = 4800
    description = "blip thermometer (a test plugin)"
    max_buffer = 128
    Config = BlipConfig
    simulator = BlipModel

    def _parse(self) -> None:
        buf = self._buf
        while True:
            i = buf.find(b"#")
            if i < 0:
                self._skip(len(buf))
                return
            self._skip(i)
            end = buf.find(b"\\n")
            if end < 0:
                return
            line = bytes(buf[1:end])
            payload, _, check = line.partition(b"*")
            x = 0
            for b in payload:
                x ^= b
            if not check or check != f"{x:02X}".encode() or not payload.startswith(b"t="):
                self._error("bad_checksum", end + 1, line.decode("ascii", "replace"))
                self._consume(end + 1)
                continue
            value = float(payload[2:]) * float(self.opt("scale", 1.0))
            self._emit(Message("reading", self._base, {"t": value}, [Measurement("temperature", value, "C")]))
            self._consume(end + 1)


register_driver(Blip)
'''


@pytest.fixture
def blip(tmp_path):
    """The plugin module, imported from a file in tmp_path; unregistered afterwards."""
    path = tmp_path / "blip_driver.py"
    path.write_text(textwrap.dedent(PLUGIN))
    spec = importlib.util.spec_from_file_location("blip_driver", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["blip_driver"] = mod
    spec.loader.exec_module(mod)
    yield mod
    DRIVERS.pop("blip", None)
    sys.modules.pop("blip_driver", None)


def wait_for(cond, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def test_plugin_config_is_part_of_the_sensor_union(blip):
    cfg = parse_config({"sensors": [{"name": "t", "driver": "blip", "port": "/dev/x", "scale": 2}]})
    s = cfg.sensors[0]
    assert type(s) is blip.BlipConfig and s.scale == 2 and s.effective_baud == 4800
    # its key on another driver names the driver it belongs to; an unknown key stays an error
    with pytest.raises(
        ConfigError, match=r"sensors\[0\]: 'scale' is not a setting of the pms5003 driver.*blip"
    ):
        parse_config({"sensors": [{"name": "pm", "driver": "pms5003", "port": "/dev/x", "scale": 2}]})
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.warmup_s: unknown key|'warmup_s' is not a setting"):
        parse_config({"sensors": [{"name": "t", "driver": "blip", "port": "/dev/x", "warmup_s": 0}]})
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.scale"):
        parse_config({"sensors": [{"name": "t", "driver": "blip", "port": "/dev/x", "scale": 0}]})


def test_registering_a_taken_name_is_refused(blip):
    from firmware_bridge.drivers import register_driver
    from firmware_bridge.drivers.pms5003 import Pms5003

    with pytest.raises(ValueError, match="already registered"):
        register_driver(Pms5003, "blip")
    register_driver(blip.Blip)  # the same class again is a no-op


def test_plugin_end_to_end_through_a_pty(blip, tmp_path, db_path, cli):
    master, slave = os.openpty()
    link = tmp_path / "ttyBLIP"
    link.symlink_to(os.ttyname(slave))
    cfg = parse_config(
        {
            "storage": {"path": str(db_path)},
            "sensors": [
                {
                    "name": "thermo",
                    "driver": "blip",
                    "port": str(link),
                    "scale": 10,
                    "reconnect_initial_s": 0.1,
                }
            ],
        }
    )
    db = Database(db_path)
    writer = Writer(db, max_delay_s=0.05).start()
    svc = SensorService(cfg.sensors, writer)
    svc.start()
    try:
        wait_for(lambda: svc.health()["thermo"]["connected"])
        os.write(master, blip.frame(21.5) + b"\xff\x00junk" + b"#t=99.0*00\n" + blip.frame(22.0))
        wait_for(lambda: svc.health()["thermo"]["frames_ok"] >= 2)
        h = svc.health()["thermo"]
        assert h["frames_ok"] == 2 and h["frames_bad"] == 1
        assert h["errors_by_reason"] == {"garbage": 1, "bad_checksum": 1}
        conn = db.reader()
        rows = wait_for(
            lambda: (
                conn.execute(
                    "SELECT value, unit FROM readings WHERE sensor = 'thermo' AND metric = 'temperature' ORDER BY id"
                ).fetchall()
                if len(conn.execute("SELECT id FROM readings WHERE sensor = 'thermo'").fetchall()) >= 2
                else None
            )
        )
        assert [tuple(r) for r in rows] == [(215.0, "C"), (220.0, "C")]  # scale = 10 applied
    finally:
        svc.stop(3)
        writer.stop(5)
        db.close()
        os.close(master)
        os.close(slave)
    health = (
        sqlite3.connect(db_path)
        .execute("SELECT driver, frames_ok, frames_bad FROM sensor_health WHERE sensor = 'thermo'")
        .fetchone()
    )
    assert tuple(health) == ("blip", 2, 1)
    r = cli("readings", "--db", str(db_path), "--sensor", "thermo", "--json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["metric"], x["value"]) for x in got] == [("temperature", 215.0), ("temperature", 220.0)]


def test_plugin_simulator_feeds_the_service(blip, tmp_path, db_path):
    link = tmp_path / "ttySIM-blip"
    sim = Simulator("blip", link, seed=3, noise=0.2).start()
    cfg = parse_config({"sensors": [{"name": "sim", "driver": "blip", "port": str(link)}]})
    db = Database(db_path)
    writer = Writer(db, max_delay_s=0.05).start()
    svc = SensorService(cfg.sensors, writer)
    svc.start()
    try:
        wait_for(
            lambda: svc.health()["sim"]["frames_ok"] >= 10 and svc.health()["sim"]["bytes_discarded"] > 0
        )
        conn = db.reader()
        vals = wait_for(
            lambda: [r[0] for r in conn.execute("SELECT value FROM readings WHERE sensor = 'sim'").fetchall()]
        )
        assert all(19.0 <= v <= 21.0 for v in vals)
    finally:
        svc.stop(3)
        sim.stop()
        writer.stop(5)
        db.close()
