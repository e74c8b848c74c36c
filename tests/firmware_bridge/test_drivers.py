"""Each driver decodes known frames to the right values and rejects corrupted ones."""

from __future__ import annotations

import pytest

from firmware_bridge.drivers import DRIVERS, make_driver, nmea, pms5003, sds011
from firmware_bridge.events import Q_NO_FIX, DecodeError, Message


def decode(driver: str, data: bytes, options=None, chunk: int | None = None):
    d = make_driver(driver, options)
    ev = []
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        ev += d.feed(data[i : i + step])
    ev += d.flush()
    return ev


def msgs(events, kind="reading"):
    return [e for e in events if isinstance(e, Message) and e.kind == kind]


def errors(events):
    return [e for e in events if isinstance(e, DecodeError)]


def values(msg):
    return {m.metric: m.value for m in msg.measurements}


# -- PMS5003 ---------------------------------------------------------------------------------------

# A 32-byte frame laid out as in the datasheet's Appendix I (values chosen, checksum computed by hand:
# the sum of the 30 bytes before it).
PMS_FRAME = bytes.fromhex("424d001c0005000b00100005000b00100474015800440006000200019700")
PMS_FRAME += (sum(PMS_FRAME) & 0xFFFF).to_bytes(2, "big")


def test_pms5003_frame_values():
    assert len(PMS_FRAME) == 32 and sum(PMS_FRAME[:30]) == 0x02A0 == int.from_bytes(PMS_FRAME[30:], "big")
    (m,) = msgs(decode("pms5003", PMS_FRAME))
    v = values(m)
    assert (v["pm1_0_cf1"], v["pm2_5_cf1"], v["pm10_cf1"]) == (5, 11, 16)
    assert (v["pm1_0"], v["pm2_5"], v["pm10"]) == (5, 11, 16)
    assert v["count_0_3um"] == 1140 and v["count_0_5um"] == 344 and v["count_1_0um"] == 68
    assert v["count_2_5um"] == 6 and v["count_5_0um"] == 2 and v["count_10um"] == 1
    assert m.fields["version"] == 0x97 and m.fields["error_code"] == 0


def test_pms5003_encoder_matches_and_byte_by_byte():
    v = {
        "pm1_0_cf1": 5,
        "pm2_5_cf1": 11,
        "pm10_cf1": 16,
        "pm1_0": 5,
        "pm2_5": 11,
        "pm10": 16,
        "count_0_3um": 1140,
        "count_0_5um": 344,
        "count_1_0um": 68,
        "count_2_5um": 6,
        "count_5_0um": 2,
        "count_10um": 1,
    }
    assert pms5003.encode_frame(v) == PMS_FRAME
    assert len(msgs(decode("pms5003", PMS_FRAME * 3, chunk=1))) == 3


def test_pms5003_commands_and_answers():
    assert pms5003.command(0xE2) == bytes.fromhex("424de200000171")  # datasheet: read in passive mode
    assert pms5003.command(0xE1, 0) == bytes.fromhex("424de100000170")  # passive mode
    assert pms5003.command(0xE4, 0) == bytes.fromhex("424de400000173")  # sleep
    (a,) = msgs(decode("pms5003", pms5003.encode_answer(0xE4, 0)), "answer")
    assert a.fields == {"command": "0xe4", "data": 0}


@pytest.mark.parametrize("i", [4, 10, 29, 30, 31])
def test_pms5003_rejects_corruption_and_resyncs(i):
    bad = bytearray(PMS_FRAME)
    bad[i] ^= 0x01
    ev = decode("pms5003", b"\x00\x42\xff" + bytes(bad) + PMS_FRAME)
    assert len(msgs(ev)) == 1 and values(msgs(ev)[0])["pm2_5"] == 11
    assert any(e.reason == "bad_checksum" for e in errors(ev))


def test_pms5003_truncated_then_valid():
    ev = decode("pms5003", PMS_FRAME[:17] + PMS_FRAME + PMS_FRAME[:9])
    assert len(msgs(ev)) == 1
    assert [e.reason for e in errors(ev)] == ["truncated", "truncated"]
    assert errors(ev)[0].offset == 0 and errors(ev)[1].offset == 17 + 32


def test_pms5003_bad_length_field():
    ev = decode("pms5003", b"\x42\x4d\x00\x99" + PMS_FRAME)
    assert errors(ev)[0].reason == "bad_length" and len(msgs(ev)) == 1


# -- SDS011 ----------------------------------------------------------------------------------------

SDS_DATASHEET = bytes.fromhex("AAC0D4043A0AA1601DAB")  # datasheet example: PM2.5 123.6, PM10 261.8


def test_sds011_datasheet_frame():
    (m,) = msgs(decode("sds011", SDS_DATASHEET))
    assert values(m) == {"pm2_5": 123.6, "pm10": 261.8}
    assert m.fields["device_id"] == "A160"
    assert sds011.encode_frame(123.6, 261.8) == SDS_DATASHEET


def test_sds011_commands_match_datasheet():
    # "set sensor to sleep" and "query data" examples from the Laser Dust Sensor Control Protocol V1.3
    assert sds011.command(6, 1, 0) == bytes.fromhex("AAB406010000000000000000000000FFFF05AB")
    assert sds011.command(4) == bytes.fromhex("AAB404000000000000000000000000FFFF02AB")
    assert sds011.command(8, 1, 1) == bytes.fromhex("AAB408010100000000000000000000FFFF08AB")
    (r,) = msgs(decode("sds011", bytes.fromhex("AAC5060100 00A16008AB".replace(" ", ""))), "reply")
    assert r.fields["command"] == 6 and r.fields["data"][:2] == [1, 0]


def test_sds011_rejects_bad_checksum_and_tail():
    bad = bytearray(SDS_DATASHEET)
    bad[3] ^= 0x10
    notail = SDS_DATASHEET[:9] + b"\xac"
    ev = decode("sds011", bytes(bad) + notail + b"\xaa\xaa\x01" + SDS_DATASHEET + SDS_DATASHEET[:6])
    assert len(msgs(ev)) == 1
    reasons = [e.reason for e in errors(ev)]
    assert "bad_checksum" in reasons and "bad_frame" in reasons and reasons[-1] == "truncated"


# -- NMEA ------------------------------------------------------------------------------------------

# The reference sentences of the NMEA 0183 documentation (checksums as published).
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
GSA = b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39\r\n"
# Sentences as printed by a u-blox M8 (GN talker, NMEA 4.1 RMC with mode and nav status).
GNRMC_NOFIX = b"$GNRMC,,V,,,,,,,,,,N*4D\r\n"
GNGGA_NOFIX = b"$GNGGA,,,,,,0,00,99.99,,,,,,*56\r\n"


def test_nmea_reference_sentences():
    ev = decode("nmea", GGA + RMC + GSA)
    assert not errors(ev)
    (gga,) = msgs(ev, "gga")
    assert gga.fields["fix_quality"] == 1 and gga.fields["satellites"] == 8 and gga.fields["hdop"] == 0.9
    assert gga.fields["lat"] == pytest.approx(48 + 7.038 / 60) and gga.fields["lon"] == pytest.approx(
        11 + 31 / 60
    )
    assert gga.fields["altitude_m"] == 545.4 and gga.fields["time"] == "12:35:19"
    (rmc,) = msgs(ev, "rmc")
    assert rmc.fields["valid"] is True and rmc.fields["utc"] == "1994-03-23T12:35:19Z"
    assert values(rmc)["gps_speed"] == pytest.approx(22.4 * 1852 / 3600, abs=1e-3)
    (gsa,) = msgs(ev, "gsa")
    assert gsa.fields["fix_type"] == 3 and gsa.fields["satellites_used"] == [4, 5, 9, 12, 24]
    assert (gsa.fields["pdop"], gsa.fields["hdop"], gsa.fields["vdop"]) == (2.5, 1.3, 2.1)


def test_nmea_no_fix_is_flagged():
    ev = decode("nmea", GNRMC_NOFIX + GNGGA_NOFIX)
    assert not errors(ev)
    (rmc,) = msgs(ev, "rmc")
    assert rmc.fields["valid"] is False and rmc.fields["utc"] is None
    (gga,) = msgs(ev, "gga")
    assert gga.fields["fix_quality"] == 0
    assert all(m.quality & Q_NO_FIX for m in gga.measurements if m.metric != "gps_fix_quality")


def test_nmea_checksum_and_garbage():
    bad = GGA.replace(b"545.4", b"545.5")
    nochk = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,\r\n"
    ev = decode(
        "nmea", b"\xff\x13junk" + bad + nochk + GGA[:30] + RMC + b"$GPGSA" + b"\x80" * 3 + b"*00\r\n" + GSA
    )
    reasons = [e.reason for e in errors(ev)]
    assert reasons == ["garbage", "bad_checksum", "no_checksum", "truncated", "bad_frame"]
    assert [m.kind for m in ev if isinstance(m, Message)] == ["rmc", "gsa"]


def test_nmea_skips_interleaved_ubx():
    ubx = nmea.ubx_frame(0x01, 0x07, bytes(range(92)))  # NAV-PVT sized payload with '$' and '\n' inside
    assert b"$" in ubx and b"\n" in ubx
    ev = decode("nmea", GGA + ubx + RMC + ubx[:40] + GSA + RMC, chunk=7)
    kinds = [m.kind for m in ev if isinstance(m, Message)]
    # the cut UBX frame fails its checksum once its length is in; the sentence after it is re-scanned
    assert kinds == ["gga", "ubx", "rmc", "gsa", "rmc"]
    assert [e.reason for e in errors(ev)] == ["bad_checksum", "garbage"]
    assert nmea.sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,") == GGA


def test_nmea_overlong_line():
    ev = decode("nmea", b"$GPTXT," + b"A" * 300 + b"\r\n" + GGA)
    assert "too_long" in [e.reason for e in errors(ev)] and msgs(ev, "gga")


# -- OPS243 ----------------------------------------------------------------------------------------


def test_ops243_plain_json_units_and_direction():
    data = (
        b"3.6\r\n-3.6\r\n\r\n"
        b'"mph",-10.0\r\n'
        b"137.429,3.6\r\n"
        b'{"Units":"km-per-hr"}\r\n'
        b'{"speed":54.0,"direction":"outbound","time":105,"tick":135}\r\n'
        b'{"unit":"mps","speed":"-2.5"}\r\n'
        b"hello\r\n"
    )
    ev = decode("ops243", data)
    r = msgs(ev)
    got = [(m.fields["direction"], m.measurements[0].metric, m.measurements[0].value) for m in r]
    assert got == [
        ("inbound", "speed_inbound", 12.96),
        ("outbound", "speed_outbound", 12.96),
        ("outbound", "speed_outbound", 16.093),
        ("inbound", "speed_inbound", 5.794),
        ("outbound", "speed_outbound", 54.0),
        ("outbound", "speed_outbound", 9.0),
    ]
    assert r[3].fields["time"] == 137.429
    assert msgs(ev, "units")[0].fields["unit"] == "kmh"
    assert [e.reason for e in errors(ev)] == ["bad_fields"]


def test_ops243_direction_sign_config_and_init():
    class Opt:
        inbound_positive = False
        init_commands = ["UK", "OJ"]

    d = make_driver("ops243", Opt())
    assert d.startup_commands() == [b"UK\r\n", b"OJ\r\n"]
    (m,) = msgs(d.feed(b"-30\r\n"))
    assert m.fields["direction"] == "inbound" and m.measurements[0].value == 30.0


def test_ops243_rejects_binary_and_absurd_speeds():
    ev = decode("ops243", b"\xff\xfe\r\n99999\r\nnan\r\n" + b"x" * 700 + b"\r\n1.0\r\n")
    assert [e.reason for e in errors(ev)] == [
        "bad_frame",
        "bad_fields",
        "bad_fields",
        "too_long",
        "bad_fields",
    ]
    assert len(msgs(ev)) == 1


def test_every_driver_is_registered_with_a_baud():
    for name, cls in DRIVERS.items():
        assert cls.default_baud > 0 and cls.max_buffer >= 64, name
