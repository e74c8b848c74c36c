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
