"""Sensor decoding details (issue #16, item 11): NMEA GLL positions, PMS5003 all-zero frames."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from firmware_bridge.drivers import nmea, pms5003
from firmware_bridge.events import Q_NO_FIX, Q_SENSOR_FAULT, Q_WARMING_UP
from firmware_bridge.summary import BAD
from tests.firmware_bridge.test_drivers import decode, errors, msgs


def test_nmea_gll_carries_the_position():
    # the NMEA 0183 reference example: 49° 16.45' N, 123° 11.12' W at 22:54:44, valid, autonomous
    ev = decode("nmea", nmea.sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A"))
    assert not errors(ev)
    (gll,) = msgs(ev, "gll")
    assert gll.fields["lat"] == pytest.approx(49 + 16.45 / 60)
    assert gll.fields["lon"] == pytest.approx(-(123 + 11.12 / 60))
    assert gll.fields["valid"] is True and gll.fields["time"] == "22:54:44"
    m = {x.metric: x for x in gll.measurements}
    assert m["latitude"].value == pytest.approx(49 + 16.45 / 60) and m["latitude"].quality == 0
    assert m["longitude"].value == pytest.approx(-(123 + 11.12 / 60))


def test_nmea_gll_without_a_fix_is_flagged():
    (gll,) = msgs(decode("nmea", nmea.sentence("GNGLL,4916.45,N,12311.12,W,225444,V,N")), "gll")
    assert gll.fields["valid"] is False
    assert all(x.quality & Q_NO_FIX for x in gll.measurements)


def _zero_frame() -> bytes:
    return pms5003.encode_frame({})


@pytest.mark.parametrize(
    ("options", "flag"), [(SimpleNamespace(warmup_s=30), Q_WARMING_UP), (None, Q_SENSOR_FAULT)]
)
def test_pms5003_all_zero_frame_is_flagged_and_left_out_of_statistics(options, flag):
    (m,) = msgs(decode("pms5003", _zero_frame(), options))
    assert m.measurements and all(x.quality & flag for x in m.measurements)
    assert all(x.quality & BAD for x in m.measurements)  # statistics and the AQI skip BAD values


def test_pms5003_clean_air_with_particles_is_a_real_reading():
    frame = pms5003.encode_frame({"count_0_3um": 120})  # PM 0 µg/m³ but particles counted: real
    (m,) = msgs(decode("pms5003", frame))  # no config: no warm-up
    assert all(x.quality == 0 for x in m.measurements)
