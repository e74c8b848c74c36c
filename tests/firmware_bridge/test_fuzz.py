"""Every parser survives a million random and mutated bytes: no exception, bounded buffer,
and it still decodes a good frame afterwards."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as p
from firmware_bridge.drivers import DRIVERS, make_driver, nmea, pms5003, sds011
from firmware_bridge.events import DecodeError, Message

GOOD = {
    "pms5003": pms5003.encode_frame({"pm2_5": 12, "pm10": 20, "count_0_3um": 999}),
    "sds011": sds011.encode_frame(12.3, 20.1),
    "nmea": nmea.sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    + nmea.ubx_frame(1, 7, bytes(range(92)))
    + nmea.sentence("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1"),
    "ops243": b'-12.5\r\n{"speed":3.2,"direction":"inbound"}\r\n"mph",4\r\n',
    "mcu": p.encode_message(
        "reading",
        3,
        {"uptime_ms": 9, "values": [{"channel": 0, "metric": "noise_laeq", "flags": 0, "value": 55.5}]},
    ),
}
GOOD["pms7003"] = GOOD["pms5003"]
TOTAL = 1_000_000


def mutated_stream(name: str, rng: random.Random, size: int) -> bytes:
    """Good frames with bit flips, cuts, duplicated and dropped bytes, and random runs between."""
    good = GOOD[name]
    out = bytearray()
    while len(out) < size:
        r = rng.random()
        if r < 0.3:
            out += rng.randbytes(rng.randint(1, 300))
        else:
            f = bytearray(good)
            for _ in range(rng.randint(0, 3)):
                i = rng.randrange(len(f))
                op = rng.random()
                if op < 0.5:
                    f[i] ^= 1 << rng.randrange(8)
                elif op < 0.7:
                    del f[i:]
                    if not f:
                        break
                elif op < 0.85:
                    f.insert(i, f[i])
                else:
                    del f[i]
                    if not f:
                        break
            out += f
    return bytes(out[:size])


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_million_random_and_mutated_bytes(name):
    rng = random.Random(zlib.crc32(name.encode()))
    d = make_driver(name)
    fed = 0
    peak = 0
    n_err = n_msg = 0
    chunks = [rng.randbytes(TOTAL // 2), mutated_stream(name, rng, TOTAL // 2)]
    for block in chunks:
        i = 0
        while i < len(block):
            n = rng.choice((1, 7, 64, 1000, 65536))
            for ev in d.feed(block[i : i + n]):
                assert isinstance(ev, (Message, DecodeError))
                if isinstance(ev, DecodeError):
                    n_err += 1
                    assert 0 <= ev.offset < d.offset + 1 and ev.length > 0
                else:
                    n_msg += 1
            fed += len(block[i : i + n])
            peak = max(peak, d.buffered)
            i += n
    assert fed >= TOTAL
    assert peak <= d.max_buffer, f"{name} buffered {peak} bytes"
    assert n_err > 0
    # after all that, a clean frame still decodes
    d.feed(b"\n\x00")
    after = [e for e in d.feed(GOOD[name] * 3) + d.flush() if isinstance(e, Message)]
    assert after, f"{name} did not recover"
    assert n_msg > 0  # the mutated half still held intact frames


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(DRIVERS)), data=st.binary(max_size=600), cut=st.integers(0, 600))
def test_any_bytes_any_split(name, data, cut):
    """Feeding the same bytes in two pieces or one gives the same events (stream semantics)."""
    a = make_driver(name)
    b = make_driver(name)
    whole = [e.to_dict() for e in a.feed(data) + a.flush()]
    split = [e.to_dict() for e in b.feed(data[:cut]) + b.feed(data[cut:]) + b.flush()]
    # offsets and kinds agree; measurement timestamps are not part of events
    strip = lambda evs: [{k: v for k, v in e.items() if k != "measurements"} for e in evs]  # noqa: E731
    assert strip(whole) == strip(split)
    assert a.buffered == 0 and b.buffered == 0
