"""EPA AQI: worked examples, every breakpoint edge of both tables, NowCast, the CLI."""

from __future__ import annotations

import json

import pytest

from firmware_bridge.aqi import TABLES, aqi, category, nowcast, sub_index


def _edges():
    for table, pols in TABLES.items():
        for pol, rows in pols.items():
            step = 0.1 if pol == "pm25" else 1
            for i, (c_lo, c_hi, i_lo, i_hi) in enumerate(rows):
                yield table, pol, c_lo, i_lo
                yield table, pol, c_hi, i_hi
                if i + 1 < len(rows):
                    assert rows[i + 1][0] == pytest.approx(c_hi + step)  # contiguous after truncation
                    assert rows[i + 1][2] == i_hi + 1


@pytest.mark.parametrize("table,pol,c,expected", list(_edges()))
def test_every_breakpoint_edge(table, pol, c, expected):
    assert sub_index(pol, c, table) == expected


@pytest.mark.parametrize(
    "table,pm25,pm10,expected,cat,dominant",
    [
        (
            "epa-2012",
            35.9,
            None,
            102,
            "Unhealthy for Sensitive Groups",
            "pm25",
        ),  # EPA technical assistance example
        ("epa-2024", 35.9, None, 102, "Unhealthy for Sensitive Groups", "pm25"),
        ("epa-2024", 12.0, None, 56, "Moderate", "pm25"),  # moderate since the 2024 revision
        ("epa-2012", 12.0, None, 50, "Good", "pm25"),
        ("epa-2012", None, 160, 103, "Unhealthy for Sensitive Groups", "pm10"),
        ("epa-2024", 9.09, 40, 50, "Good", "pm25"),  # truncation: 9.09 -> 9.0
        ("epa-2024", 5.0, 54.9, 50, "Good", "pm10"),  # PM10 truncated to 54
        ("epa-2024", 150.0, 100, 225, "Very Unhealthy", "pm25"),
        ("epa-2012", 300.0, None, 350, "Hazardous", "pm25"),
        ("epa-2024", 300.0, None, 449, "Hazardous", "pm25"),  # 199/99.9 * 74.5 + 301 = 449.4
        ("epa-2024", 900.0, 2000, 500, "Hazardous", "pm25"),  # beyond the index
    ],
)
def test_worked_examples(table, pm25, pm10, expected, cat, dominant):
    r = aqi(pm25, pm10, table)
    assert (r["aqi"], r["category"], r["dominant"], r["table"]) == (expected, cat, dominant, table)


def test_categories_and_errors():
    assert [category(x) for x in (0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500)] == [
        "Good",
        "Good",
        "Moderate",
        "Moderate",
        "Unhealthy for Sensitive Groups",
        "Unhealthy for Sensitive Groups",
        "Unhealthy",
        "Unhealthy",
        "Very Unhealthy",
        "Very Unhealthy",
        "Hazardous",
        "Hazardous",
    ]
    with pytest.raises(ValueError):
        aqi(None, None)
    with pytest.raises(ValueError):
        sub_index("pm25", -1)
    with pytest.raises(ValueError):
        sub_index("pm25", 10, "epa-1999")


def test_nowcast():
    assert nowcast([20.0] * 12) == 20.0
    # w = max(10/30, 0.5) = 0.5 -> (30 + 0.5*10) / 1.5 = 23.33 -> truncated 23.3
    assert nowcast([30.0, 10.0]) == 23.3
    # w = 20/40 = 0.5 ... weights 1, .5, .25: (40 + 10 + 5) / 1.75 = 31.43
    assert nowcast([40.0, 20.0, 20.0]) == 31.4
    # w = 0.8: (10 + 0.8*12.5 + 0.64*10) / 2.44 = 10.82
    assert nowcast([10.0, 12.5, 10.0]) == 10.8
    assert nowcast([None, None, 20.0, 20.0]) is None  # needs 2 of the 3 latest hours
    assert nowcast([10.0, None, 20.0]) is not None
    assert nowcast([55.7, 60.0], "pm10") == 57.0


def test_aqi_cli(cli):
    r = cli("aqi", "--pm25", "35.9", "--pm10", "160", "--table", "epa-2012", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {k: out[k] for k in ("aqi", "category", "dominant", "table")} == {
        "aqi": 103,
        "category": "Unhealthy for Sensitive Groups",
        "dominant": "pm10",
        "table": "epa-2012",
    }
    r = cli("aqi", "--pm25", "12")
    assert r.returncode == 0 and "AQI 56 (Moderate)" in r.stdout and "epa-2024" in r.stdout
    r = cli("aqi")
    assert r.returncode != 0 and "pm25" in r.stderr


# -- EPA AQI over time: hourly averages, NowCast, the daily 24-hour mean, missing data ----------------
# Rules from the EPA technical assistance document for the AQI (EPA-454/B-24-002, May 2024) and
# AirNow's notes on it: NowCast weight factor w = min/max of the 12 hours, at least 0.5, the most
# recent hour weighted w^0; 2 of the 3 latest hours must be valid; the raw hourly averages are used
# and the NowCast is truncated (PM2.5 to 0.1); the daily AQI is the 24-hour mean with 18 of 24 hours;
# the AQI is rounded to the nearest integer.


def test_nowcast_pulse_example():
    # A single hour of 71 ug/m3 after eleven hours of 0: w* = 0 -> w = 0.5;
    # NowCast = 71 / (1 + 0.5 + ... + 0.5^11) = 71 / 1.99951 = 35.508 -> 35.5 -> AQI 101 (2024 table)
    c = nowcast([71.0] + [0.0] * 11)
    assert c == 35.5
    assert aqi(c)["aqi"] == 101 and aqi(c)["category"] == "Unhealthy for Sensitive Groups"
    # an hour later the pulse is one hour old: (0 + 0.5*71) / 1.99951 = 17.75 -> 17.7 -> AQI 67 (49/26.3 * 8.6 + 51 = 67.02)
    c = nowcast([0.0, 71.0] + [0.0] * 10)
    assert c == 17.7 and aqi(c)["aqi"] == 67


def test_nowcast_epa_worked_example():
    # EPA's NowCast worked example ("Computing the NowCast", the EPA/AirNow training material behind
    # the NowCast fact sheet): the 12 hours, oldest first, 50 80 75 90 82 53 64 74 21 10 16 13 ug/m3;
    # range 90 - 10 = 80, scaled rate 80/90, weight 1 - 0.89 = 0.11 < 0.5 -> 0.5; NowCast 17.4 ug/m3.
    oldest_first = [50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]
    c = nowcast([float(x) for x in reversed(oldest_first)])
    assert c == 17.4
    assert (
        aqi(c)["aqi"] == 66 and aqi(c, table="epa-2012")["aqi"] == 62
    )  # 2024: 49/26.3*8.3+51; 2012: 49/23.3*5.3+51
    # with one of the two latest hours missing it is still reported (2 of the latest 3), weights by age
    c = nowcast([None] + [float(x) for x in reversed(oldest_first)][1:])
    assert c == 21.8  # (16*0.5 + 10*0.25 + ...) / (0.5 + 0.25 + ...): the missing hour is skipped, not filled


def test_nowcast_uses_raw_hours_and_truncates_the_result():
    # steady air: w = 1, the NowCast is the plain average of the hours present
    assert nowcast([12.34, 12.34, 12.34]) == 12.3
    # missing hours are skipped, not filled: [10, -, 20, 20] -> w = 0.5, (10 + 0.25*20 + 0.125*20) / 1.375
    assert nowcast([10.0, None, 20.0, 20.0]) == 12.7
    # 2 of the 3 latest hours: the latest two missing -> no NowCast, whatever came before
    assert nowcast([None, None, 20.0] + [20.0] * 9) is None
    assert nowcast([None, 15.0, 15.0]) == 15.0


def test_daily_mean_needs_18_of_24_hours():
    from firmware_bridge.aqi import daily_mean

    full = [10.0] * 12 + [20.0] * 12
    assert daily_mean(full) == 15.0 and aqi(daily_mean(full))["aqi"] == 62  # 49/26.3 * 5.9 + 51 = 61.99
    day_with_gaps = [10.0] * 12 + [20.0] * 6 + [None] * 6  # 18 valid hours: (120 + 120) / 18 = 13.33
    assert daily_mean(day_with_gaps) == 13.3
    too_few = [10.0] * 17 + [None] * 7
    assert daily_mean(too_few) is None
    assert daily_mean([54.9] * 24, "pm10") == 54.0


def _fill(conn, sensor, hours: dict[int, tuple[float, int]], day_start: float) -> None:
    """Readings for ``{hour_of_day: (value, minutes with a reading)}`` of the UTC day at ``day_start``."""
    from agent.timefmt import iso_utc

    rows = []
    for h, (value, minutes) in hours.items():
        for m in range(minutes):
            rows.append((iso_utc(day_start + h * 3600 + m * 60 + 1), sensor, "pm2_5", value, "ug/m3", 0))
    conn.executemany(
        "INSERT INTO readings (ts, sensor, metric, value, unit, quality) VALUES (?,?,?,?,?,?)", rows
    )


def test_summary_daily_aqi_and_a_day_with_missing_hours(tmp_path):
    from agent.store.db import Database
    from agent.timefmt import iso_utc
    from firmware_bridge import summary

    db = Database(tmp_path / "aqi.sqlite")
    today = (1796169600 // 86400) * 86400  # a UTC midnight
    # yesterday: 20 hours of 12.0 (60 minutes each), hour 5 has only 30 minutes (invalid, not guessed),
    # hours 20..23 missing: 19 valid hours -> daily mean 12.0 -> AQI 56 (Moderate)
    hours = {h: (12.0, 60) for h in range(20)}
    hours[5] = (500.0, 30)
    _fill(db.conn, "air", hours, today - 86400)
    # another sensor, yesterday: only 10 hours
    _fill(db.conn, "air2", {h: (12.0, 60) for h in range(10)}, today - 86400)
    _fill(db.conn, "air", {0: (12.0, 2)}, today)  # the sensors still report in the summarised window
    _fill(db.conn, "air2", {0: (12.0, 2)}, today)
    end = iso_utc(today + 300)
    s = summary.sensors_section(db.conn, iso_utc(today), end)
    d = s["air"]["aqi"]["daily"]
    assert d["basis"] == "24h_mean" and d["from"] == iso_utc(today - 86400) and d["to"] == iso_utc(today)
    assert d["hours_valid"] == {"pm2_5": 19} and d["pm2_5"] == 12.0 and d["aqi"] == 56
    assert d["category"] == "Moderate" and d["color"] == "#ffff00"
    d2 = s["air2"]["aqi"]["daily"]
    assert d2["aqi"] is None and d2["hours_valid"] == {"pm2_5": 10} and "18 of 24" in d2["missing"]
    hrs = summary.hourly_means(db.conn, "air", "pm2_5", today, 24)
    assert [h["valid"] for h in hrs][::-1] == [h < 20 and h != 5 for h in range(24)]
    assert hrs[-6]["minutes"] == 30 and hrs[-6]["mean"] is None  # hour 5: marked, not guessed
    # NowCast at 00:05 uses hours 12..23 of yesterday: the latest three (21, 22, 23) are missing
    cur = s["air"]["aqi"]["current"]
    assert cur["aqi"] is None and "2 of the 3" in cur["missing"]


def test_daily_aqi_is_per_database_and_counts_late_readings_of_the_day(tmp_path):
    """Two units' databases in one process (a hub, the tests) with a sensor of the same name give their
    own daily AQI; and readings of the day's last hours committed just after midnight still count."""
    from agent.store.db import Database
    from agent.timefmt import iso_utc
    from firmware_bridge import summary

    today = (1796169600 // 86400) * 86400
    a, b = Database(tmp_path / "a.sqlite"), Database(tmp_path / "b.sqlite")
    _fill(a.conn, "air", {h: (12.0, 60) for h in range(18)}, today - 86400)
    _fill(b.conn, "air", {h: (40.0, 60) for h in range(24)}, today - 86400)
    for db in (a, b):
        _fill(db.conn, "air", {0: (12.0, 2)}, today)
    window = (iso_utc(today), iso_utc(today + 120))
    da = summary.sensors_section(a.conn, *window)["air"]["aqi"]["daily"]
    db_ = summary.sensors_section(b.conn, *window)["air"]["aqi"]["daily"]
    assert (da["pm2_5"], da["hours_valid"]) == (12.0, {"pm2_5": 18})
    assert (db_["pm2_5"], db_["hours_valid"]) == (40.0, {"pm2_5": 24})
    # the writer commits the last hours of yesterday a little late: the next summary counts them
    _fill(a.conn, "air", {h: (12.0, 60) for h in range(18, 24)}, today - 86400)
    da = summary.sensors_section(a.conn, iso_utc(today), iso_utc(today + 180))["air"]["aqi"]["daily"]
    assert da["hours_valid"] == {"pm2_5": 24}
    a.close()
    b.close()
