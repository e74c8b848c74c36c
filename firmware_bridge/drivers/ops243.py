"""OmniPreSense OPS243-A Doppler radar speed sensor (USB CDC or UART, default 19200 8N1 on the UART).

One report per line (CR LF). Plain text mode prints the speed (``-3.6``), optionally preceded by
the unit (``"mph",-3.6``; units report ``OU``), the time since power-on (``137.429,3.6``; ``OT``)
and the magnitude (``OM``): ``time, magnitude, speed``. JSON mode (``OJ``) prints objects such as
``{"speed":0.58,"direction":"inbound","time":105,"tick":135}`` or ``{"unit":"mph","speed":"-3.6"}``.
Command answers are JSON too (``{"Units":"km-per-hr"}`` after ``UK``); the driver follows them.

Units: ``UM`` m/s (default), ``UK`` km/h, ``US`` mph, ``UF`` ft/s, ``UC`` cm/s. The sign gives the
direction: by default positive is inbound (towards the sensor) and negative outbound; set
``inbound_positive = false`` when the sensor's mounting reverses it. Speeds are stored in km/h as
``speed_inbound`` / ``speed_outbound`` so that window statistics never mix directions.
"""

from __future__ import annotations

import json
import math
import random

from pydantic import Field

from firmware_bridge.drivers.base import DeviceModel, Driver, SensorConfig
from firmware_bridge.events import Measurement, Message

MAX_LINE = 512
TO_KMH = {"mps": 3.6, "kmh": 1.0, "mph": 1.609344, "fps": 1.09728, "cmps": 0.036}
UNIT_ALIASES = {
    "mps": "mps",
    "m-per-sec": "mps",
    "m/s": "mps",
    "ms": "mps",
    "kph": "kmh",
    "kmh": "kmh",
    "km-per-hr": "kmh",
    "km/h": "kmh",
    "kmph": "kmh",
    "mph": "mph",
    "fps": "fps",
    "ft-per-sec": "fps",
    "ft/s": "fps",
    "cps": "cmps",
    "cmps": "cmps",
    "cm-per-sec": "cmps",
    "cm/s": "cmps",
}
UNIT_COMMANDS = {"UM": "mps", "UK": "kmh", "US": "mph", "UF": "fps", "UC": "cmps"}
MAX_KMH = 400.0  # faster than any road vehicle: a decoding error, not a speed


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


class Ops243Config(SensorConfig):
    """``driver = "ops243"`` (radar speed sensor)."""

    init_commands: list[str] = Field(
        default_factory=list,
        description='ASCII commands sent at connect, e.g. ["UK", "OJ"] (km/h, JSON output).',
    )
    inbound_positive: bool = Field(
        True,
        description="A positive speed means inbound (towards the sensor). Set false if the mounting reverses it.",
    )


class Ops243(Driver):
    name = "ops243"
    default_baud = 19200
    description = "OmniPreSense OPS243 radar speed (plain text or JSON lines)"
    max_buffer = MAX_LINE + 64
    Config = Ops243Config
    simulator = Ops243Model

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.unit = "mps"
        for cmd in self.opt("init_commands", []):
            if cmd.strip() in UNIT_COMMANDS:
                self.unit = UNIT_COMMANDS[cmd.strip()]

    def startup_commands(self) -> list[bytes]:
        return [c.strip().encode("ascii") + b"\r\n" for c in self.opt("init_commands", []) if c.strip()]

    def _leftover_reason(self) -> str:
        return "truncated"

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            end = buf.find(b"\n", 0, MAX_LINE + 1)
            if end < 0:
                if len(buf) > MAX_LINE:
                    self._error("too_long", MAX_LINE, f"no end of line within {MAX_LINE} bytes")
                    self._consume(MAX_LINE)
                    continue
                return
            line = bytes(buf[: end + 1])
            self._line(line)
            self._consume(end + 1)

    def _line(self, raw: bytes) -> None:
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self._error("bad_frame", len(raw), "non-ASCII byte in line")
            return
        if not text:
            return  # blank-data reporting (BL) or an empty line: nothing measured
        if any(ord(c) < 0x20 for c in text):
            self._error("bad_frame", len(raw), "control character in line")
            return
        try:
            if text.startswith("{"):
                self._json(text)
            else:
                self._plain(text)
        except (ValueError, TypeError, KeyError) as exc:
            self._error("bad_fields", len(raw), f"{text[:40]!r}: {exc}")

    def _json(self, text: str) -> None:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if "Units" in obj and "speed" not in obj:
            self._set_unit(str(obj["Units"]))
            self._emit(Message("units", self._base, {"unit": self.unit}))
            return
        if "speed" not in obj:
            self._emit(Message("info", self._base, {"info": {k: obj[k] for k in list(obj)[:8]}}))
            return
        if "unit" in obj:
            self._set_unit(str(obj["unit"]))
        speeds = obj["speed"] if isinstance(obj["speed"], list) else [obj["speed"]]
        direction = obj.get("direction")
        mags = obj.get("magnitude")
        extra = {"time": obj["time"]} if "time" in obj else {}
        if mags is not None:
            extra["magnitude"] = mags
        self._report([float(s) for s in speeds], direction, extra)

    def _plain(self, text: str) -> None:
        parts = [p.strip() for p in text.split(",")]
        if parts[0].startswith('"'):
            self._set_unit(parts[0].strip('"'))
            parts = parts[1:]
        if not parts or not parts[-1]:
            raise ValueError("no speed")
        extra = {}
        if len(parts) >= 2:
            extra["time"] = float(parts[0])
        if len(parts) >= 3:
            extra["magnitude"] = float(parts[1])
        self._report([float(parts[-1])], None, extra)

    def _set_unit(self, name: str) -> None:
        key = UNIT_ALIASES.get(name.strip().lower())
        if key is None:
            raise ValueError(f"unknown unit {name!r}")
        self.unit = key

    def _report(self, speeds: list[float], direction: str | None, extra: dict) -> None:
        inbound_positive = bool(self.opt("inbound_positive", True))
        ms, out = [], []
        for s in speeds:
            if not math.isfinite(s):
                raise ValueError("speed is not a finite number")
            kmh = abs(s) * TO_KMH[self.unit]
            if kmh > MAX_KMH:
                raise ValueError(f"speed {s} {self.unit} is out of range")
            if direction in ("inbound", "outbound"):
                d = direction
            else:
                d = "inbound" if (s >= 0) == inbound_positive else "outbound"
            ms.append(Measurement(f"speed_{d}", round(kmh, 3), "km/h"))
            out.append({"speed": s, "direction": d, "speed_kmh": round(kmh, 3)})
        fields = {
            "unit": self.unit,
            **extra,
            "speed": out[0]["speed"],
            "direction": out[0]["direction"],
            "speed_kmh": out[0]["speed_kmh"],
        }
        if len(out) > 1:
            fields["targets"] = out
        self._emit(Message("reading", self._base, fields, ms))
