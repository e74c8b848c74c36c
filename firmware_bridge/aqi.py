"""US EPA Air Quality Index from PM2.5 and PM10.

Tables: ``epa-2024`` (the PM NAAQS revision effective 6 May 2024: PM2.5 "good" ends at 9.0 µg/m³
and 301-500 is one hazardous segment) and ``epa-2012`` (the earlier table). Concentrations are
truncated first (PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³), then
``I = (I_hi - I_lo) / (C_hi - C_lo) * (C - C_lo) + I_lo``, rounded to the nearest integer.
Above the top breakpoint the index is 500 ("beyond the AQI"). NowCast (:func:`nowcast`) turns
12 hourly averages into the concentration used for an hourly AQI; :func:`daily_mean` turns a day's
hourly averages into the 24-hour mean of the daily AQI.

Completeness (EPA technical assistance document and AirNow's rules): an hourly average is valid
when at least :data:`HOUR_MIN_MINUTES` of its 60 minutes have valid readings (75 %); a NowCast needs
2 of the 3 most recent hours; a daily (24-hour) mean needs :data:`DAY_MIN_HOURS` of 24 hours (75 %).
Anything with too little data is reported as missing with its reason, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CATEGORIES = [
    (50, "Good"),
    (100, "Moderate"),
    (150, "Unhealthy for Sensitive Groups"),
    (200, "Unhealthy"),
    (300, "Very Unhealthy"),
    (500, "Hazardous"),
]

#: AQI category colours (EPA technical assistance document, table "names and colors"), as hex RGB
COLORS = {
    "Good": "#00e400",
    "Moderate": "#ffff00",
    "Unhealthy for Sensitive Groups": "#ff7e00",
    "Unhealthy": "#ff0000",
    "Very Unhealthy": "#8f3f97",
    "Hazardous": "#7e0023",
}
HOUR_MIN_MINUTES = 45
DAY_MIN_HOURS = 18

# (C_lo, C_hi, I_lo, I_hi)
TABLES: dict[str, dict[str, list[tuple[float, float, int, int]]]] = {
    "epa-2024": {
        "pm25": [
            (0.0, 9.0, 0, 50),
            (9.1, 35.4, 51, 100),
            (35.5, 55.4, 101, 150),
            (55.5, 125.4, 151, 200),
            (125.5, 225.4, 201, 300),
            (225.5, 325.4, 301, 500),
        ],
        "pm10": [
            (0, 54, 0, 50),
            (55, 154, 51, 100),
            (155, 254, 101, 150),
            (255, 354, 151, 200),
            (355, 424, 201, 300),
            (425, 604, 301, 500),
        ],
    },
    "epa-2012": {
        "pm25": [
            (0.0, 12.0, 0, 50),
            (12.1, 35.4, 51, 100),
            (35.5, 55.4, 101, 150),
            (55.5, 150.4, 151, 200),
            (150.5, 250.4, 201, 300),
            (250.5, 350.4, 301, 400),
            (350.5, 500.4, 401, 500),
        ],
        "pm10": [
            (0, 54, 0, 50),
            (55, 154, 51, 100),
            (155, 254, 101, 150),
            (255, 354, 151, 200),
            (355, 424, 201, 300),
            (425, 504, 301, 400),
            (505, 604, 401, 500),
        ],
    },
}
TABLE_NAMES = tuple(TABLES)
DEFAULT_TABLE = "epa-2024"


def truncate(pollutant: str, c: float) -> float:
    """EPA truncation: PM2.5 to one decimal, PM10 to an integer."""
    if pollutant == "pm25":
        return math.floor(round(c * 10, 6)) / 10.0
    return float(math.floor(round(c, 6)))


def category(aqi: int) -> str:
    for top, name in CATEGORIES:
        if aqi <= top:
            return name
    return "Hazardous"


def color(aqi_value: int) -> str:
    """The category colour of an AQI value (hex RGB)."""
    return COLORS[category(aqi_value)]


def sub_index(pollutant: str, c: float, table: str = DEFAULT_TABLE) -> int:
    """The AQI of one pollutant (``pm25`` or ``pm10``) at concentration ``c`` (µg/m³)."""
    if table not in TABLES:
        raise ValueError(f"unknown AQI table {table!r} (known: {', '.join(TABLES)})")
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"concentration must be a finite number >= 0, got {c}")
    c = truncate(pollutant, c)
    rows = TABLES[table][pollutant]
    for c_lo, c_hi, i_lo, i_hi in rows:
        if c <= c_hi:
            # values between two rows' edges (e.g. 9.05 before truncation) belong to the upper row
            c_lo = min(c_lo, c)
            return int(math.floor((i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + i_lo + 0.5))
    return 500


def aqi(pm25: float | None = None, pm10: float | None = None, table: str = DEFAULT_TABLE) -> dict:
    """``{"aqi", "category", "dominant", "table", "sub_indices"}`` from the pollutants given."""
    subs: dict[str, int] = {}
    if pm25 is not None:
        subs["pm25"] = sub_index("pm25", pm25, table)
    if pm10 is not None:
        subs["pm10"] = sub_index("pm10", pm10, table)
    if not subs:
        raise ValueError("give PM2.5 and/or PM10")
    dominant = max(subs, key=lambda k: subs[k])
    value = subs[dominant]
    return {
        "aqi": value,
        "category": category(value),
        "color": color(value),
        "dominant": dominant,
        "table": table,
        "sub_indices": subs,
    }


def nowcast(hourly: Sequence[float | None], pollutant: str = "pm25") -> float | None:
    """EPA NowCast from up to 12 hourly averages, most recent first (None: missing hour).

    Needs at least two of the three most recent hours. Weight factor w = min/max over the
    available hours, at least 0.5; result = sum(w^i c_i) / sum(w^i), truncated like the AQI input.
    """
    h = list(hourly[:12])
    if sum(1 for x in h[:3] if x is not None) < 2:
        return None
    vals = [x for x in h if x is not None]
    cmax, cmin = max(vals), min(vals)
    w = 0.5 if cmax <= 0 else max(cmin / cmax, 0.5)
    num = sum((w**i) * c for i, c in enumerate(h) if c is not None)
    den = sum(w**i for i, c in enumerate(h) if c is not None)
    return truncate(pollutant, num / den)


def daily_mean(hourly: Sequence[float | None], pollutant: str = "pm25") -> float | None:
    """The 24-hour mean of a day's hourly averages (None: missing hour), truncated like the AQI input;
    None when fewer than :data:`DAY_MIN_HOURS` hours are valid."""
    vals = [x for x in hourly if x is not None]
    if len(vals) < DAY_MIN_HOURS:
        return None
    return truncate(pollutant, sum(vals) / len(vals))
