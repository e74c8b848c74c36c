"""Our microcontroller (noise, temperature/humidity, loops, tamper, supply): PROTOCOL.md, v1.

The stream is COBS frames separated by ``0x00``; everything between two delimiters is one frame
candidate, so garbage costs at most the frame it hits. The driver checks CRC, version and length,
decodes the message, turns readings into measurements (metric name, plus ``_<channel>`` for
channels other than 0) and counts sequence gaps (frames lost on the line).
"""

from __future__ import annotations

import random
import time
from typing import Any

from pydantic import Field

from firmware_bridge import protocol as p
from firmware_bridge.drivers.base import DeviceModel, Driver, SensorConfig
from firmware_bridge.events import Q_OUT_OF_RANGE, Q_SENSOR_FAULT, Q_STALE, Measurement, Message

_FLAG_MAP = ((1, Q_OUT_OF_RANGE), (2, Q_SENSOR_FAULT), (4, Q_STALE))


def metric_name(channel: int, metric: str) -> str:
    return metric if channel == 0 else f"{metric}_{channel}"


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
        self.decoder = Mcu()
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


class McuConfig(SensorConfig):
    """``driver = "mcu"`` (our microcontroller)."""

    sample_interval_ms: int | None = Field(
        None,
        ge=100,
        le=3_600_000,
        description="Sampling interval sent to the microcontroller at connect (set_interval).",
        examples=[1000],
    )
    command_timeout_s: float = Field(
        0.5, gt=0, le=30, description="How long to wait for an ack or nack before resending a command."
    )
    command_retries: int = Field(
        3, ge=0, le=10, description="Resends of an unanswered command before it times out."
    )


class Mcu(Driver):
    name = "mcu"
    default_baud = 115200
    description = "edge-agent MCU protocol v1 (COBS + CRC-16 frames, see PROTOCOL.md)"
    max_buffer = p.MAX_WIRE + 16
    Config = McuConfig
    simulator = McuModel
    commands = True

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self._discarding = False
        self._last_seq: int | None = None
        self.seq_gaps = 0
        self.hello: dict | None = None

    def startup_commands(self) -> list[bytes]:
        # A lone 0x00 ends whatever partial frame the MCU holds; then ask who it is.
        return [b"\x00"]

    def setup_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Ask the MCU who it is, and set its interval when the config has one."""
        out: list[tuple[str, dict[str, Any]]] = [("request_hello", {})]
        interval = self.opt("sample_interval_ms", None)
        if interval:
            out.append(("set_interval", {"interval_ms": interval}))
        return out

    def hello_request(self) -> bytes | None:
        return b"\x00" + p.wire(p.REQUEST_HELLO, 1, p.encode_payload(p.REQUEST_HELLO, {}))

    def health_extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq_gaps": self.seq_gaps}
        if self.hello:
            out["firmware"] = self.hello.get("firmware")
        return out

    def _leftover_reason(self) -> str:
        return "truncated"

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            z = buf.find(0)
            if z < 0:
                if len(buf) > p.MAX_WIRE:
                    if not self._discarding:
                        self._error("too_long", len(buf), f"no 0x00 delimiter within {p.MAX_WIRE} bytes")
                        self._consume(len(buf))
                        self._discarding = True
                    else:
                        self._skip(len(buf))
                return
            if self._discarding:  # the tail of an over-long frame
                self._skip(z + 1)
                self._discarding = False
                continue
            if z == 0:
                self._consume(1)  # an empty frame: a delimiter, allowed anywhere
                continue
            self._frame(bytes(buf[:z]), z + 1)
            self._consume(z + 1)

    def _frame(self, encoded: bytes, n: int) -> None:
        try:
            msg_type, seq, payload = p.decode_frame(p.cobs_decode(encoded))
            fields = p.decode_payload(msg_type, payload)
        except p.ProtocolError as exc:
            self._error(exc.reason, n, exc.detail)
            return
        kind = p.TYPE_NAMES[msg_type]
        if msg_type == p.HELLO:
            self.hello = fields
            self._last_seq = seq  # the MCU (re)started: its counter starts over
        elif msg_type not in p.COMMANDS:
            if self._last_seq is not None and seq != (self._last_seq + 1) & 0xFFFF:
                self.seq_gaps += 1
                fields = {**fields, "seq_gap": (seq - self._last_seq - 1) & 0xFFFF}
            self._last_seq = seq
        ms = []
        if msg_type == p.READING:
            for v in fields["values"]:
                unit = p.METRICS.get(p.METRIC_CODES.get(v["metric"], 0), ("", ""))[1]
                q = 0
                for bit, flag in _FLAG_MAP:
                    if v["flags"] & bit:
                        q |= flag
                value = v["value"]
                if value != value or value in (float("inf"), float("-inf")):
                    continue  # NaN / inf: the firmware's "no value"
                ms.append(Measurement(metric_name(v["channel"], v["metric"]), float(value), unit, q))
        self._emit(Message(kind, self._base, {"seq": seq, **fields}, ms))
