"""The edge-agent MCU protocol, version 1: framing, header, messages (see PROTOCOL.md).

A frame is ``version u8 | type u8 | seq u16 | len u8 | payload[len] | crc u16`` (integers
little-endian; CRC-16/CCITT-FALSE over everything before it), COBS-encoded and followed by one
``0x00`` delimiter, so a receiver resynchronises on the next ``0x00`` after any garbage.
This module is pure: bytes in, values out. The stream decoder is ``drivers/mcu.py``; the
command/ack/retry logic is ``commands.py``.
"""

from __future__ import annotations

import struct
from typing import Any

VERSION = 1
MAX_PAYLOAD = 240
HEADER_LEN = 5
MAX_FRAME = HEADER_LEN + MAX_PAYLOAD + 2
MAX_WIRE = MAX_FRAME + 1 + 1  # COBS adds one byte per 254 (one here) + the 0x00 delimiter

HELLO, READING, HEARTBEAT = 0x01, 0x02, 0x03
ACK, NACK = 0x10, 0x11
SET_INTERVAL, SET_RELAY, REBOOT, REQUEST_HELLO = 0x20, 0x21, 0x22, 0x23
TYPE_NAMES = {
    HELLO: "hello",
    READING: "reading",
    HEARTBEAT: "heartbeat",
    ACK: "ack",
    NACK: "nack",
    SET_INTERVAL: "set_interval",
    SET_RELAY: "set_relay",
    REBOOT: "reboot",
    REQUEST_HELLO: "request_hello",
}
TYPE_CODES = {v: k for k, v in TYPE_NAMES.items()}
COMMANDS = (SET_INTERVAL, SET_RELAY, REBOOT, REQUEST_HELLO)

NACK_REASONS = {1: "unknown_type", 2: "bad_payload", 3: "out_of_range", 4: "busy", 5: "unsupported_version"}
NACK_CODES = {v: k for k, v in NACK_REASONS.items()}

# metric code -> (name, unit)
METRICS = {
    1: ("noise_laeq", "dBA"),
    2: ("temperature", "degC"),
    3: ("humidity", "%RH"),
    4: ("loop_count", "count"),
    5: ("loop_occupancy", "%"),
    6: ("tamper", "bool"),
    7: ("supply_voltage", "V"),
    8: ("relay_state", "bool"),
}
METRIC_CODES = {name: code for code, (name, _) in METRICS.items()}
VALUE_FLAGS = {1: "out_of_range", 2: "sensor_fault", 4: "stale"}
REBOOT_MAGIC = b"BOOT"
INTERVAL_MIN_MS, INTERVAL_MAX_MS = 100, 3_600_000


class ProtocolError(ValueError):
    """A frame that fails a check; ``reason`` is the decode error's reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


# -- CRC and COBS ----------------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR ("123456789" -> 0x29B1)."""
    c = 0xFFFF
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ _CRC_TABLE[((c >> 8) ^ b) & 0xFF]
    return c


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the output has no 0x00 byte."""
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises ProtocolError on a malformed block."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("bad_frame", "0x00 inside a COBS frame")
        end = i + code
        if end > n:
            raise ProtocolError("bad_frame", "COBS block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise ProtocolError("bad_frame", "0x00 inside a COBS block")
        out += block
        i = end
        if code != 255 and i < n:
            out.append(0)
    return bytes(out)


# -- frames ----------------------------------------------------------------------------------------


def encode_frame(msg_type: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """The unencoded frame: header, payload and CRC."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BBHB", version, msg_type, seq & 0xFFFF, len(payload)) + payload
    return body + struct.pack("<H", crc16(body))


def wire(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """What goes on the line: COBS(frame) + 0x00."""
    return cobs_encode(encode_frame(msg_type, seq, payload)) + b"\x00"


def decode_frame(frame: bytes) -> tuple[int, int, bytes]:
    """Check a COBS-decoded frame; return (type, seq, payload)."""
    if len(frame) < HEADER_LEN + 2:
        raise ProtocolError("truncated", f"{len(frame)} bytes is shorter than a header and CRC")
    want = frame[-2] | frame[-1] << 8
    if crc16(frame[:-2]) != want:
        raise ProtocolError("bad_checksum", f"CRC {want:#06x} != {crc16(frame[:-2]):#06x}")
    version, msg_type, seq, n = struct.unpack_from("<BBHB", frame)
    if version != VERSION:
        raise ProtocolError("bad_version", f"protocol version {version}, expected {VERSION}")
    if n != len(frame) - HEADER_LEN - 2:
        raise ProtocolError(
            "bad_length", f"length field {n}, payload has {len(frame) - HEADER_LEN - 2} bytes"
        )
    return msg_type, seq, frame[HEADER_LEN:-2]


# -- payloads --------------------------------------------------------------------------------------


def _metric(code: int) -> str:
    return METRICS.get(code, (f"metric_{code}", ""))[0]


def encode_payload(msg_type: int, f: dict[str, Any]) -> bytes:
    """The payload of a message from its fields (the inverse of :func:`decode_payload`)."""
    if msg_type == HELLO:
        major, minor, patch = (int(x) for x in f["firmware"].split("."))
        inv = b"".join(bytes([c["channel"], METRIC_CODES[c["metric"]]]) for c in f["channels"])
        return (
            struct.pack(
                "<BBBBIBB",
                f["protocol"],
                major,
                minor,
                patch,
                f["interval_ms"],
                f["relays"],
                len(f["channels"]),
            )
            + inv
        )
    if msg_type == READING:
        vals = b"".join(
            struct.pack("<BBBf", v["channel"], METRIC_CODES[v["metric"]], v.get("flags", 0), v["value"])
            for v in f["values"]
        )
        return struct.pack("<IB", f["uptime_ms"], len(f["values"])) + vals
    if msg_type == HEARTBEAT:
        return struct.pack("<IHB", f["uptime_ms"], f["rx_errors"], f["status"])
    if msg_type == ACK:
        return struct.pack("<HB", f["ack_seq"], TYPE_CODES[f["ack_type"]])
    if msg_type == NACK:
        return struct.pack("<HBB", f["ack_seq"], TYPE_CODES[f["ack_type"]], NACK_CODES[f["reason"]])
    if msg_type == SET_INTERVAL:
        return struct.pack("<I", f["interval_ms"])
    if msg_type == SET_RELAY:
        return struct.pack("<BB", f["relay"], 1 if f["on"] else 0)
    if msg_type == REBOOT:
        return REBOOT_MAGIC
    if msg_type == REQUEST_HELLO:
        return b""
    raise ValueError(f"unknown message type {msg_type:#04x}")


def decode_payload(msg_type: int, p: bytes) -> dict[str, Any]:
    """Fields of a message; raises ProtocolError('bad_payload' / 'unknown_type')."""
    try:
        return _decode_payload(msg_type, p)
    except struct.error as exc:
        raise ProtocolError("bad_payload", f"{TYPE_NAMES.get(msg_type, msg_type)}: {exc}") from None


def _decode_payload(t: int, p: bytes) -> dict[str, Any]:
    def exact(n: int) -> None:
        if len(p) != n:
            raise ProtocolError("bad_payload", f"{TYPE_NAMES[t]} payload must be {n} bytes, got {len(p)}")

    if t == HELLO:
        proto, major, minor, patch, interval, relays, n = struct.unpack_from("<BBBBIBB", p)
        exact(10 + 2 * n)
        chans = [{"channel": p[10 + 2 * i], "metric": _metric(p[11 + 2 * i])} for i in range(n)]
        return {
            "protocol": proto,
            "firmware": f"{major}.{minor}.{patch}",
            "interval_ms": interval,
            "relays": relays,
            "channels": chans,
        }
    if t == READING:
        uptime, n = struct.unpack_from("<IB", p)
        exact(5 + 7 * n)
        vals = []
        for i in range(n):
            ch, code, flags, value = struct.unpack_from("<BBBf", p, 5 + 7 * i)
            vals.append({"channel": ch, "metric": _metric(code), "flags": flags, "value": value})
        return {"uptime_ms": uptime, "values": vals}
    if t == HEARTBEAT:
        exact(7)
        uptime, errs, status = struct.unpack("<IHB", p)
        return {"uptime_ms": uptime, "rx_errors": errs, "status": status}
    if t in (ACK, NACK):
        exact(3 if t == ACK else 4)
        seq, typ = struct.unpack_from("<HB", p)
        d: dict[str, Any] = {"ack_seq": seq, "ack_type": TYPE_NAMES.get(typ, f"type_{typ}")}
        if t == NACK:
            d["reason"] = NACK_REASONS.get(p[3], f"reason_{p[3]}")
        return d
    if t == SET_INTERVAL:
        exact(4)
        return {"interval_ms": struct.unpack("<I", p)[0]}
    if t == SET_RELAY:
        exact(2)
        return {"relay": p[0], "on": bool(p[1])}
    if t == REBOOT:
        if p != REBOOT_MAGIC:
            raise ProtocolError("bad_payload", "reboot needs the 4 bytes 'BOOT'")
        return {}
    if t == REQUEST_HELLO:
        exact(0)
        return {}
    raise ProtocolError("unknown_type", f"message type {t:#04x}")


def encode_message(type_name: str, seq: int, fields: dict[str, Any]) -> bytes:
    """The wire bytes of a message given by name and fields (tests, simulator, PROTOCOL.md vectors)."""
    t = TYPE_CODES[type_name]
    return wire(t, seq, encode_payload(t, fields))
