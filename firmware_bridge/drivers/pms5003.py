"""Plantower PMS5003 / PMS7003 particulate matter sensors (9600 8N1).

Frames (datasheet "Appendix I"): ``0x42 0x4D``, a big-endian frame length (28 for a data frame:
13 data words + checksum; 4 for a command answer), the data words, and a 16-bit checksum that is
the sum of every byte before it. Data words: PM1.0 / PM2.5 / PM10 in µg/m³ "CF=1" (standard
particle), the same under atmospheric environment, then counts of particles above 0.3, 0.5, 1.0,
2.5, 5.0 and 10 µm per 0.1 L of air, then a reserved word (version and error code).

Commands (7 bytes): ``0x42 0x4D CMD DATAH DATAL LRCH LRCL`` with LRC = sum of the first 5 bytes:
``0xE2`` read (passive mode), ``0xE1`` mode (0 passive, 1 active), ``0xE4`` sleep (0) / wake (1).
"""

from __future__ import annotations

import random
import struct
import time

from pydantic import Field

from firmware_bridge.drivers.base import AqiConfig, DeviceModel, Driver, PassiveModeConfig
from firmware_bridge.events import Q_OUT_OF_RANGE, Q_SENSOR_FAULT, Q_WARMING_UP, Measurement, Message

HEADER = b"\x42\x4d"
DATA_LEN = 28  # frame length field of a data frame
ANSWER_LEN = 4  # frame length field of a command answer
CMD_READ, CMD_MODE, CMD_SLEEP = 0xE2, 0xE1, 0xE4

PM_FIELDS = ("pm1_0_cf1", "pm2_5_cf1", "pm10_cf1", "pm1_0", "pm2_5", "pm10")
COUNT_FIELDS = ("count_0_3um", "count_0_5um", "count_1_0um", "count_2_5um", "count_5_0um", "count_10um")
PM_MAX = 1000  # µg/m³: the sensors' effective range; above it values are flagged


def command(cmd: int, data: int = 0) -> bytes:
    """A 7-byte host command with its checksum."""
    body = HEADER + bytes([cmd, (data >> 8) & 0xFF, data & 0xFF])
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def encode_frame(values: dict[str, int], version: int = 0x97, error: int = 0) -> bytes:
    """A data frame for ``values`` (PM and count fields; missing ones are 0). For the simulator and tests."""
    words = [int(values.get(k, 0)) & 0xFFFF for k in PM_FIELDS + COUNT_FIELDS]
    body = HEADER + struct.pack(">H12H", DATA_LEN, *words) + bytes([version & 0xFF, error & 0xFF])
    return body + struct.pack(">H", sum(body) & 0xFFFF)


def encode_answer(cmd: int, data: int) -> bytes:
    """The 8-byte answer a sensor gives to a mode/sleep command."""
    body = HEADER + struct.pack(">HBB", ANSWER_LEN, cmd, data & 0xFF)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


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
        return encode_frame(v)

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
            if cmd == CMD_READ and not self.asleep:
                out += self.frame()
            elif cmd == CMD_MODE:
                self.active = d == 1
                out += encode_answer(cmd, d)
            elif cmd == CMD_SLEEP:
                self.asleep = d == 0
                out += encode_answer(cmd, d) if d == 0 else b""
        return out


class Pms5003Config(PassiveModeConfig, AqiConfig):
    """``driver = "pms5003"`` (or ``"pms7003"``)."""

    warmup_s: float = Field(
        30.0, ge=0, description="Readings during this long after connect/wake are flagged warming_up."
    )


class Pms5003(Driver):
    name = "pms5003"
    default_baud = 9600
    description = "Plantower PMS5003/PMS7003 particulate matter (32-byte frames, 0x42 0x4D)"
    max_buffer = 256
    Config = Pms5003Config
    simulator = PmsModel

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._warm_until = 0.0
        if options is not None:
            self._warm_until = time.monotonic() + float(self.opt("warmup_s", 30.0))

    def startup_commands(self) -> list[bytes]:
        passive = self.opt("mode", "active") == "passive"
        self._warm_until = time.monotonic() + float(self.opt("warmup_s", 30.0))
        return [command(CMD_SLEEP, 1), command(CMD_MODE, 0 if passive else 1)]

    def poll_command(self) -> bytes | None:
        return command(CMD_READ) if self.opt("mode", "active") == "passive" else None

    def sleep_command(self, sleep: bool) -> bytes | None:
        if not sleep:
            self._warm_until = time.monotonic() + float(self.opt("warmup_s", 30.0))
        return command(CMD_SLEEP, 0 if sleep else 1)

    def _parse(self) -> None:
        buf = self._buf
        while True:
            i = buf.find(HEADER)
            if i < 0:
                self._skip(len(buf) - (1 if buf.endswith(HEADER[:1]) else 0))
                return
            self._skip(i)
            if len(buf) < 4:
                return
            length = (buf[2] << 8) | buf[3]
            if length not in (DATA_LEN, ANSWER_LEN):
                self._error("bad_length", 2, f"frame length {length}")
                self._consume(2)
                continue
            total = 4 + length
            if len(buf) < total:
                return
            want = (buf[total - 2] << 8) | buf[total - 1]
            got = sum(buf[: total - 2]) & 0xFFFF
            if want != got:
                nxt = buf.find(HEADER, 2, total)
                if nxt > 0:
                    self._error("truncated", nxt, "a new frame header inside the frame")
                    self._consume(nxt)
                else:
                    self._error("bad_checksum", total, f"checksum {want:#06x} != sum {got:#06x}")
                    self._consume(2)  # look for the next header inside the rejected bytes too
                continue
            self._emit(self._decode(bytes(buf[:total])))
            self._consume(total)

    def _decode(self, frame: bytes) -> Message:
        if len(frame) == 4 + ANSWER_LEN:
            return Message("answer", self._base, {"command": f"{frame[4]:#04x}", "data": frame[5]})
        words = struct.unpack(">12H", frame[4:28])
        version, error = frame[28], frame[29]
        warm = Q_WARMING_UP if time.monotonic() < self._warm_until else 0
        if not any(words[:12]):
            # every value zero, counts included: a sensor that has not started measuring (fan spinning
            # up after power-on or wake) or has stopped; real air always has particles in the 0.3 µm
            # bin. Kept, but flagged so it is left out of statistics and the AQI
            warm = Q_WARMING_UP if warm else Q_SENSOR_FAULT
        ms = []
        for name, v in zip(PM_FIELDS, words[:6]):
            ms.append(Measurement(name, float(v), "ug/m3", warm | (Q_OUT_OF_RANGE if v > PM_MAX else 0)))
        for name, v in zip(COUNT_FIELDS, words[6:]):
            ms.append(Measurement(name, float(v), "count/0.1L", warm))
        fields = {
            "pm": dict(zip(PM_FIELDS, words[:6])),
            "counts": dict(zip(COUNT_FIELDS, words[6:])),
            "version": version,
            "error_code": error,
        }
        return Message("reading", self._base, fields, ms)
