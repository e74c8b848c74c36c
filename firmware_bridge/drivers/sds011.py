"""Nova Fitness SDS011 particulate matter sensor (9600 8N1).

Sensor to host, 10 bytes: ``0xAA``, command id (``0xC0`` data, ``0xC5`` reply to a command),
6 data bytes, a checksum (sum of the 6 data bytes, low 8 bits) and ``0xAB``. A data frame holds
PM2.5 and PM10 as little-endian tenths of µg/m³, then the 2-byte device id.

Host to sensor, 19 bytes: ``0xAA 0xB4``, 13 data bytes (the first is the command), the target
device id (``0xFF 0xFF``: any), a checksum (sum of data bytes and id, low 8 bits) and ``0xAB``.
Commands: 2 reporting mode (active / query), 4 query data, 6 sleep / work, 7 firmware version,
8 working period (0: continuous, 1-30: one measurement every n minutes).
"""

from __future__ import annotations

import random

from pydantic import Field, model_validator

from firmware_bridge.drivers.base import AqiConfig, DeviceModel, Driver, PassiveModeConfig
from firmware_bridge.events import Q_OUT_OF_RANGE, Measurement, Message

HEAD, TAIL = 0xAA, 0xAB
CMD_DATA, CMD_REPLY, CMD_HOST = 0xC0, 0xC5, 0xB4
REPORT_MODE, QUERY, SLEEP_WORK, FIRMWARE, WORK_PERIOD = 2, 4, 6, 7, 8
PM_MAX = 999.9


def command(cmd: int, *data: int, device_id: int = 0xFFFF) -> bytes:
    """A 19-byte host command: ``cmd`` then up to 12 data bytes (zero padded)."""
    body = bytes([cmd, *data]).ljust(13, b"\x00")[:13] + bytes([(device_id >> 8) & 0xFF, device_id & 0xFF])
    return bytes([HEAD, CMD_HOST]) + body + bytes([sum(body) & 0xFF, TAIL])


def encode_frame(pm2_5: float, pm10: float, device_id: int = 0xA160) -> bytes:
    """A 10-byte data frame (for the simulator and tests)."""
    a, b = int(round(pm2_5 * 10)) & 0xFFFF, int(round(pm10 * 10)) & 0xFFFF
    data = bytes([a & 0xFF, a >> 8, b & 0xFF, b >> 8, (device_id >> 8) & 0xFF, device_id & 0xFF])
    return bytes([HEAD, CMD_DATA]) + data + bytes([sum(data) & 0xFF, TAIL])


def encode_reply(cmd: int, b1: int, b2: int, b3: int = 0, device_id: int = 0xA160) -> bytes:
    """A 10-byte reply (0xC5) to a host command."""
    data = bytes([cmd, b1, b2, b3, (device_id >> 8) & 0xFF, device_id & 0xFF])
    return bytes([HEAD, CMD_REPLY]) + data + bytes([sum(data) & 0xFF, TAIL])


class SdsModel(DeviceModel):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.pm25, self.query, self.asleep = 15.0, False, False
        self._in = bytearray()

    def frame(self) -> bytes:
        self.pm25 = self._walk(self.pm25, 0.5, 300, 2.5)
        return encode_frame(round(self.pm25, 1), round(self.pm25 * 1.6, 1))

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
            if cmd == QUERY:
                out += self.frame()
            elif cmd == REPORT_MODE:
                self.query = b1 == 1 and b2 == 1 or (b1 == 0 and self.query)
                out += encode_reply(cmd, b1, 1 if self.query else 0)
            elif cmd == SLEEP_WORK:
                if b1 == 1:
                    self.asleep = b2 == 0
                out += encode_reply(cmd, b1, 0 if self.asleep else 1)
            elif cmd == WORK_PERIOD:
                out += encode_reply(cmd, b1, b2)
            elif cmd == FIRMWARE:
                out += encode_reply(cmd, 18, 11, 16)
        return out


class Sds011Config(PassiveModeConfig, AqiConfig):
    """``driver = "sds011"``."""

    working_period_min: int | None = Field(
        None,
        ge=0,
        le=30,
        description="Set the working period at connect (0: continuous, 1-30: one measurement every n minutes).",
        examples=[0],
    )

    @model_validator(mode="after")
    def _period_checks(self) -> Sds011Config:
        if self.working_period_min and self.stale_after_s < 90 * self.working_period_min:
            raise ValueError(
                "stale_after_s must be at least 1.5 x working_period_min minutes (the sensor is silent in between)"
            )
        return self


class Sds011(Driver):
    name = "sds011"
    default_baud = 9600
    description = "Nova SDS011 particulate matter (10-byte frames, 0xAA 0xC0 ... 0xAB)"
    max_buffer = 64
    Config = Sds011Config
    simulator = SdsModel

    def startup_commands(self) -> list[bytes]:
        query = self.opt("mode", "active") == "passive"
        out = [command(SLEEP_WORK, 1, 1), command(REPORT_MODE, 1, 1 if query else 0)]
        period = self.opt("working_period_min", None)
        if period is not None:
            out.append(command(WORK_PERIOD, 1, int(period)))
        return out

    def poll_command(self) -> bytes | None:
        return command(QUERY) if self.opt("mode", "active") == "passive" else None

    def sleep_command(self, sleep: bool) -> bytes | None:
        return command(SLEEP_WORK, 1, 0 if sleep else 1)

    def _parse(self) -> None:
        buf = self._buf
        while True:
            i = buf.find(HEAD)
            if i < 0:
                self._skip(len(buf))
                return
            self._skip(i)
            if len(buf) < 2:
                return
            if buf[1] not in (CMD_DATA, CMD_REPLY):
                self._skip(1)
                continue
            if len(buf) < 10:
                return
            if buf[9] != TAIL:
                nxt = buf.find(HEAD, 1, 10)
                self._error(
                    "truncated" if nxt > 0 else "bad_frame", nxt if nxt > 0 else 10, "no 0xAB at byte 9"
                )
                self._consume(nxt if nxt > 0 else 1)
                continue
            if sum(buf[2:8]) & 0xFF != buf[8]:
                self._error("bad_checksum", 10, f"checksum {buf[8]:#04x} != {sum(buf[2:8]) & 0xFF:#04x}")
                self._consume(1)
                continue
            self._emit(self._decode(bytes(buf[:10])))
            self._consume(10)

    def _decode(self, f: bytes) -> Message:
        dev = f"{f[6]:02X}{f[7]:02X}"
        if f[1] == CMD_REPLY:
            return Message(
                "reply", self._base, {"command": f[2], "data": [f[3], f[4], f[5]], "device_id": dev}
            )
        pm25 = (f[2] | f[3] << 8) / 10.0
        pm10 = (f[4] | f[5] << 8) / 10.0
        ms = [
            Measurement("pm2_5", pm25, "ug/m3", Q_OUT_OF_RANGE if pm25 > PM_MAX else 0),
            Measurement("pm10", pm10, "ug/m3", Q_OUT_OF_RANGE if pm10 > PM_MAX else 0),
        ]
        return Message("reading", self._base, {"pm2_5": pm25, "pm10": pm10, "device_id": dev}, ms)
