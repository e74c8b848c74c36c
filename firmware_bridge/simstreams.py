"""What each simulated device says: realistic frames, answers to host commands, and line noise.

A :class:`DeviceModel` produces the bytes of one report (``tick``) and answers the host's bytes
(``answer``). :func:`corrupt` applies the line faults the tests and the demo need: random
garbage, truncated frames and flipped bytes (bad checksums).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time

from firmware_bridge import protocol as p
from firmware_bridge.drivers import DRIVERS, make_driver, nmea, pms5003, sds011
from firmware_bridge.drivers.base import DeviceModel
from firmware_bridge.events import Message


def corrupt(frame: bytes, rng: random.Random, noise: float) -> bytes:
    """With probability ``noise`` each: prepend garbage, cut the frame short, flip one byte."""
    out = frame
    if noise <= 0:
        return out
    if rng.random() < noise:
        out = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 24))) + out
    r = rng.random()
    if r < noise / 2:
        out = out[: rng.randint(1, max(1, len(out) - 1))]
    elif r < noise:
        i = rng.randrange(len(out))
        out = out[:i] + bytes([out[i] ^ (1 << rng.randrange(8))]) + out[i + 1 :]
    return out


class PmsModel(DeviceModel):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.pm25 = 12.0
        self.active = True
        self.asleep = False
        self._in = bytearray()

    def frame(self) -> bytes:
        self.pm25 = self._walk(self.pm25, 1, 150, 2.0)
        pm25 = int(self.pm25)
        v = {
            "pm1_0": int(pm25 * 0.7),
            "pm2_5": pm25,
            "pm10": int(pm25 * 1.4) + 1,
            "count_0_3um": pm25 * 180,
            "count_0_5um": pm25 * 52,
            "count_1_0um": pm25 * 9,
            "count_2_5um": pm25,
            "count_5_0um": pm25 // 4,
            "count_10um": pm25 // 12,
        }
        v.update({"pm1_0_cf1": v["pm1_0"], "pm2_5_cf1": pm25, "pm10_cf1": v["pm10"]})
        return pms5003.encode_frame(v)

    def tick(self) -> bytes:
        return self.frame() if self.active and not self.asleep else b""

    def answer(self, data: bytes) -> bytes:
        self._in += data
        out = b""
        while len(self._in) >= 7:
            i = self._in.find(b"\x42\x4d")
            if i < 0:
                self._in.clear()
                break
            del self._in[:i]
            if len(self._in) < 7:
                break
            cmd, d = self._in[2], self._in[4]
            del self._in[:7]
            if cmd == pms5003.CMD_READ and not self.asleep:
                out += self.frame()
            elif cmd == pms5003.CMD_MODE:
                self.active = d == 1
                out += pms5003.encode_answer(cmd, d)
            elif cmd == pms5003.CMD_SLEEP:
                self.asleep = d == 0
                out += pms5003.encode_answer(cmd, d) if d == 0 else b""
        return out


class SdsModel(DeviceModel):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.pm25, self.query, self.asleep = 15.0, False, False
        self._in = bytearray()

    def frame(self) -> bytes:
        self.pm25 = self._walk(self.pm25, 0.5, 300, 2.5)
        return sds011.encode_frame(round(self.pm25, 1), round(self.pm25 * 1.6, 1))

    def tick(self) -> bytes:
        return b"" if self.query or self.asleep else self.frame()

    def answer(self, data: bytes) -> bytes:
        self._in += data
        out = b""
        while True:
            i = self._in.find(b"\xaa\xb4")
            if i < 0 or len(self._in) - i < 19:
                if i < 0:
                    self._in.clear()
                break
            c = bytes(self._in[i : i + 19])
            del self._in[: i + 19]
            if c[-1] != 0xAB or sum(c[2:17]) & 0xFF != c[17]:
                continue
            cmd, b1, b2 = c[2], c[3], c[4]
            if cmd == sds011.QUERY:
                out += self.frame()
            elif cmd == sds011.REPORT_MODE:
                self.query = b1 == 1 and b2 == 1 or (b1 == 0 and self.query)
                out += sds011.encode_reply(cmd, b1, 1 if self.query else 0)
            elif cmd == sds011.SLEEP_WORK:
                if b1 == 1:
                    self.asleep = b2 == 0
                out += sds011.encode_reply(cmd, b1, 0 if self.asleep else 1)
            elif cmd == sds011.WORK_PERIOD:
                out += sds011.encode_reply(cmd, b1, b2)
            elif cmd == sds011.FIRMWARE:
                out += sds011.encode_reply(cmd, 18, 11, 16)
        return out


class NmeaModel(DeviceModel):
    lat, lon = 48.1173, 11.5167

    def tick(self) -> bytes:
        now = dt.datetime.now(dt.timezone.utc)
        hms = now.strftime("%H%M%S") + f".{now.microsecond // 10000:02d}"
        lat = self.lat + self.rng.uniform(-1e-5, 1e-5)
        lon = self.lon + self.rng.uniform(-1e-5, 1e-5)
        la = f"{int(lat):02d}{(lat % 1) * 60:07.4f},N"
        lo = f"{int(lon):03d}{(lon % 1) * 60:07.4f},E"
        sats = self.rng.randint(7, 11)
        out = nmea.sentence(f"GNGGA,{hms},{la},{lo},1,{sats:02d},0.9,545.4,M,46.9,M,,")
        out += nmea.sentence(f"GNRMC,{hms},A,{la},{lo},0.02,,{now.strftime('%d%m%y')},,,A")
        out += nmea.sentence("GNGSA,A,3,04,05,,09,12,,,24,,,,,1.8,0.9,1.5")
        if self.rng.random() < 0.3:  # a UBX NAV message interleaved on the same line
            out += nmea.ubx_frame(0x01, 0x07, bytes(self.rng.getrandbits(8) for _ in range(92)))
        return out


class Ops243Model(DeviceModel):
    interval_s = 0.2

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.json, self.unit = False, "mps"
        self._in = b""

    def tick(self) -> bytes:
        if self.rng.random() < 0.3:
            return b"\r\n"  # blank report (no target)
        kmh = self.rng.uniform(20, 70) * (1 if self.rng.random() < 0.5 else -1)
        conv = {"mps": 1 / 3.6, "kmh": 1.0, "mph": 1 / 1.609344}[self.unit]
        v = round(kmh * conv, 1)
        if self.json:
            return (json.dumps({"unit": self.unit, "speed": f"{v:.1f}"}) + "\r\n").encode()
        return f"{v:.1f}\r\n".encode()

    def answer(self, data: bytes) -> bytes:
        self._in += data
        out = b""
        while b"\n" in self._in:
            line, self._in = self._in.split(b"\n", 1)
            cmd = line.strip().decode("ascii", "replace")
            if cmd == "OJ":
                self.json = True
            elif cmd == "Oj":
                self.json = False
            elif cmd in ("UM", "UK", "US"):
                self.unit = {"UM": "mps", "UK": "kmh", "US": "mph"}[cmd]
                names = {"mps": "m-per-sec", "kmh": "km-per-hr", "mph": "mph"}
                out += (json.dumps({"Units": names[self.unit]}) + "\r\n").encode()
        return out


class McuModel(DeviceModel):
    """Our MCU: hello, readings, heartbeats; acks/nacks commands. ``ignore_commands``: the first
    n command frames get no answer (to exercise retries); ``silent``: never answers."""

    def __init__(self, rng: random.Random, ignore_commands: int = 0, silent: bool = False) -> None:
        super().__init__(rng)
        self.seq = 0
        self.interval_ms = 1000
        self.relays = [False, False]
        self.ignore_commands = ignore_commands
        self.silent = silent
        self.decoder = make_driver("mcu")
        self.last_cmd: tuple[int, bytes] | None = None
        self.next_heartbeat = time.monotonic() + 5
        self.noise_db, self.temp = 58.0, 21.0
        self.commands_seen: list[dict] = []

    @property
    def interval_s(self) -> float:  # type: ignore[override]
        return self.interval_ms / 1000.0

    def _send(self, name: str, fields: dict) -> bytes:
        data = p.encode_message(name, self.seq, fields)
        self.seq = (self.seq + 1) & 0xFFFF
        return data

    def hello(self) -> bytes:
        chans = [
            {"channel": 0, "metric": m}
            for m in ("noise_laeq", "temperature", "humidity", "tamper", "supply_voltage")
        ]
        chans += [{"channel": 0, "metric": "loop_count"}, {"channel": 1, "metric": "loop_count"}]
        return self._send(
            "hello",
            {
                "protocol": 1,
                "firmware": "1.4.2",
                "interval_ms": self.interval_ms,
                "relays": len(self.relays),
                "channels": chans,
            },
        )

    def start(self) -> bytes:
        return b"\x00" + self.hello()

    def uptime(self) -> int:
        return int((time.monotonic() - self.t0) * 1000) & 0xFFFFFFFF

    def tick(self) -> bytes:
        self.noise_db = self._walk(self.noise_db, 40, 95, 3)
        self.temp = self._walk(self.temp, -10, 45, 0.1)
        vals = [
            ("noise_laeq", 0, round(self.noise_db, 1)),
            ("temperature", 0, round(self.temp, 2)),
            ("humidity", 0, 55.0),
            ("loop_count", 0, float(self.rng.randint(0, 3))),
            ("loop_count", 1, float(self.rng.randint(0, 2))),
            ("tamper", 0, 0.0),
            ("supply_voltage", 0, round(12.1 + self.rng.uniform(-0.2, 0.2), 2)),
        ]
        out = self._send(
            "reading",
            {
                "uptime_ms": self.uptime(),
                "values": [{"channel": c, "metric": m, "flags": 0, "value": v} for m, c, v in vals],
            },
        )
        if time.monotonic() >= self.next_heartbeat:
            self.next_heartbeat = time.monotonic() + 5
            out += self._send("heartbeat", {"uptime_ms": self.uptime(), "rx_errors": 0, "status": 0})
        return out

    def answer(self, data: bytes) -> bytes:
        out = b""
        for ev in self.decoder.feed(data):
            if not isinstance(ev, Message) or p.TYPE_CODES.get(ev.kind) not in p.COMMANDS:
                continue
            self.commands_seen.append(ev.to_dict())
            if self.silent:
                continue
            if self.ignore_commands > 0:
                self.ignore_commands -= 1
                continue
            out += self._execute(ev)
        return out

    def _execute(self, ev: Message) -> bytes:
        seq, kind, f = ev.fields["seq"], ev.kind, ev.fields
        ack = {"ack_seq": seq, "ack_type": kind}
        if self.last_cmd == (seq, kind.encode()):
            return self._send("ack", ack)  # a resend of a command already done: answer, do not redo
        nack = None
        if kind == "set_interval":
            if not p.INTERVAL_MIN_MS <= f["interval_ms"] <= p.INTERVAL_MAX_MS:
                nack = "out_of_range"
            else:
                self.interval_ms = f["interval_ms"]
        elif kind == "set_relay":
            if f["relay"] >= len(self.relays):
                nack = "out_of_range"
            else:
                self.relays[f["relay"]] = f["on"]
        if nack:
            return self._send("nack", {**ack, "reason": nack})
        self.last_cmd = (seq, kind.encode())
        out = self._send("ack", ack)
        if kind == "reboot":
            self.seq = 0
            self.t0 = time.monotonic()
            out += b"\x00" + self.hello()
        elif kind == "request_hello":
            out += self.hello()
        return out


def make_model(device: str, rng: random.Random, **kw) -> DeviceModel:
    models = {
        "pms5003": PmsModel,
        "pms7003": PmsModel,
        "sds011": SdsModel,
        "nmea": NmeaModel,
        "ops243": Ops243Model,
        "mcu": McuModel,
    }
    sim = DRIVERS[device].simulator if device in DRIVERS else None
    if sim is not None:  # a driver that brings its own model (plugins)
        return sim(rng, **kw)
    if device not in models:
        raise ValueError(f"unknown device {device!r}")
    return models[device](rng, **kw) if device == "mcu" else models[device](rng)


__all__ = ["corrupt", "make_model", "DeviceModel"]
