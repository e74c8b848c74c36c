"""PROTOCOL.md's test vectors, parsed out of the document, against the implementation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from firmware_bridge import protocol as p
from firmware_bridge.drivers import make_driver
from firmware_bridge.events import DecodeError, Message

DOC = Path(p.__file__).with_name("PROTOCOL.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[dict[str, str]]:
    out = []
    for body in re.findall(rf"```{lang}\n(.*?)```", DOC, re.S):
        d = {}
        for line in body.strip().splitlines():
            k, _, v = line.partition(":")
            d[k.strip()] = v.strip()
        out.append(d)
    return out


VECTORS = _blocks("vector")
REJECTS = _blocks("reject")


def test_document_has_vectors_for_every_message_type():
    assert {v["message"] for v in VECTORS} == set(p.TYPE_NAMES.values())
    assert len(REJECTS) >= 2


@pytest.mark.parametrize("v", VECTORS, ids=[v["message"] for v in VECTORS])
def test_vector(v):
    fields = json.loads(v["fields"])
    frame, wire = bytes.fromhex(v["frame"]), bytes.fromhex(v["wire"])
    t, seq = p.TYPE_CODES[v["message"]], int(v["seq"])
    assert p.encode_frame(t, seq, p.encode_payload(t, fields)) == frame
    assert p.cobs_encode(frame) + b"\x00" == wire
    assert p.encode_message(v["message"], seq, fields) == wire
    assert frame[-2:] == p.crc16(frame[:-2]).to_bytes(2, "little")
    (msg,) = make_driver("mcu").feed(wire)
    assert isinstance(msg, Message) and msg.kind == v["message"]
    assert msg.fields == {"seq": seq, **fields}


@pytest.mark.parametrize("r", REJECTS, ids=[r["reason"] for r in REJECTS])
def test_reject_vector(r):
    good = bytes.fromhex(VECTORS[0]["wire"])
    ev = make_driver("mcu").feed(bytes.fromhex(r["wire"]) + good)
    assert isinstance(ev[0], DecodeError) and ev[0].reason == r["reason"]
    assert isinstance(ev[1], Message) and ev[1].kind == VECTORS[0]["message"]


def test_crc_check_value_and_cobs_examples_in_the_document():
    assert "`123456789` give `0x29B1`" in DOC and p.crc16(b"123456789") == 0x29B1
    assert "`11 22 00 33` encode as `03 11 22 02 33`" in DOC
    assert p.cobs_encode(bytes.fromhex("11220033")) == bytes.fromhex("0311220233")
    assert p.cobs_encode(b"\x00") == b"\x01\x01"
    for n in (0, 1, 253, 254, 255, 600):
        data = bytes((i % 255) + 1 for i in range(n)) + b"\x00" + bytes(range(n % 7))
        assert 0 not in p.cobs_encode(data) and p.cobs_decode(p.cobs_encode(data)) == data


def test_max_sizes_in_the_document():
    assert p.MAX_WIRE == 249 and "at most 249 bytes" in DOC
    big = p.encode_message(
        "reading",
        1,
        {
            "uptime_ms": 1,
            "values": [{"channel": i, "metric": "temperature", "flags": 0, "value": 1.0} for i in range(33)],
        },
    )
    assert len(big) <= p.MAX_WIRE
    (msg,) = make_driver("mcu").feed(big)
    assert len(msg.measurements) == 33
