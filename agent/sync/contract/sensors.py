"""The summary's serial-sensor sections: per sensor, metric statistics, health and the US EPA AQI; GPS."""

from __future__ import annotations

from agent.sync.contract.fields import INT0, f, mapof, obj, ts


def aqi_result(desc: str, basis: list[str], hours: bool = True) -> dict:
    props = {
        "basis": {"enum": basis, "description": "How the concentrations were averaged."},
        "from": ts("Start of the averaging period"),
        "to": ts("End of the averaging period"),
        "hours_valid": mapof(
            "Valid hourly averages per pollutant (an hour needs 45 of its 60 minutes).",
            f("integer", "Hours.", "h", **INT0),
            "metric",
        ),
        "aqi": f(
            "integer",
            "US EPA AQI; null when there is too little data (see missing).",
            null=True,
            minimum=0,
            maximum=500,
        ),
        "category": {
            "enum": [
                "Good",
                "Moderate",
                "Unhealthy for Sensitive Groups",
                "Unhealthy",
                "Very Unhealthy",
                "Hazardous",
                None,
            ],
            "description": "EPA category; null with the AQI.",
        },
        "color": f(
            "string", "EPA category colour (hex RGB); null with the AQI.", null=True, pattern="^#[0-9a-f]{6}$"
        ),
        "dominant": {"enum": ["pm25", "pm10"], "description": "Pollutant with the highest sub-index."},
        "sub_indices": obj(
            "AQI per pollutant.",
            {
                "pm25": f("integer", "PM2.5 sub-index.", **INT0),
                "pm10": f("integer", "PM10 sub-index.", **INT0),
            },
            optional=("pm25", "pm10"),
        ),
        "pm2_5": f(
            "number", "PM2.5 concentration used (truncated to 0.1); null when missing.", "µg/m³", null=True
        ),
        "pm10": f(
            "number", "PM10 concentration used (truncated to 1); null when missing.", "µg/m³", null=True
        ),
        "missing": f("string", "Why there is no AQI (too little data); only when aqi is null."),
    }
    optional = ("dominant", "sub_indices", "missing")
    if not hours:
        props.pop("hours_valid")
        props.pop("from")
    return obj(desc, props, optional=optional)


def metric_stats() -> dict:
    """The window statistics of one sensor metric."""
    return obj(
        "Statistics of one metric in the window.",
        {
            "count": f("integer", "Rows in the window (flagged included).", "rows", **INT0),
            "flagged": f(
                "integer",
                "Rows left out of the statistics (out_of_range, sensor_fault, warming_up, no_fix, stale).",
                "rows",
                **INT0,
            ),
            "min": f(
                "number", "Minimum of the unflagged values; null when all were flagged.", "(unit)", null=True
            ),
            "mean": f(
                "number", "Mean of the unflagged values; null when all were flagged.", "(unit)", null=True
            ),
            "max": f(
                "number", "Maximum of the unflagged values; null when all were flagged.", "(unit)", null=True
            ),
            "last": f("number", "Latest unflagged value; null when all were flagged.", "(unit)", null=True),
            "unit": f(
                "string",
                "Unit of the values (ug/m3, count/0.1L, km/h, degC, %RH, V, m, deg, s, code, count, bool, dBA; empty: none).",
            ),
        },
    )


def sensor_health() -> dict:
    """The sensor's last health row (null before the first)."""
    return obj(
        "The sensor's last health row; null before the first.",
        {
            "connected": f("boolean", "The port is open and frames arrive."),
            "frames_ok": f("integer", "Valid frames since start.", "frames", **INT0),
            "frames_bad": f("integer", "Invalid frames since start.", "frames", **INT0),
            "resyncs": f("integer", "Times the decoder resynchronised.", **INT0),
            "reconnects": f("integer", "Port reopenings.", **INT0),
            "last_error": f("string", "Last error; null when none.", null=True),
        },
        null=True,
    )


def sensor_aqi() -> dict:
    """A PM sensor's AQI: the current one (``from`` and ``hours_valid`` optional) and the daily one."""
    current = aqi_result(
        "Current AQI: NowCast over the 12 complete UTC hours before the window end (aqi_nowcast = false: the window mean, not an EPA AQI).",
        ["nowcast", "window_mean"],
    )
    current["required"] = [k for k in current["required"] if k not in ("from", "hours_valid")]
    return obj(
        "PM sensors only: the US EPA AQI.",
        {
            "table": {
                "enum": ["epa-2024", "epa-2012"],
                "description": "Breakpoint table (sensors.aqi_table).",
            },
            "current": current,
            "daily": aqi_result(
                "Daily AQI: 24-hour mean of the last complete UTC day (18 of 24 hours needed).",
                ["24h_mean"],
            ),
        },
    )


def sensors_section() -> dict:
    sensor = obj(
        "One serial sensor.",
        {
            "driver": f(
                "string",
                "Driver: pms5003, pms7003, sds011, nmea, ops243, mcu; null before its first health row.",
                null=True,
            ),
            "metrics": mapof(
                "Per metric (pm2_5, pm10, speed_inbound, latitude, ...).", metric_stats(), "metric"
            ),
            "health": sensor_health(),
            "aqi": sensor_aqi(),
        },
        optional=("aqi",),
    )
    return mapof(
        "Per serial sensor (schema 2: no inner 'sensors' map, the AQI sits with its sensor).",
        sensor,
        "sensor",
    )


def gps_section() -> dict:
    return obj(
        "GPS fix and clock trust (the first sensor with a fix in the window).",
        {
            "sensor": f("string", "The GPS sensor."),
            "fix_quality": f(
                "number",
                "NMEA GGA fix quality (0 none, 1 GPS, 2 DGPS ...); null when not reported.",
                "code",
                null=True,
            ),
            "satellites": f("number", "Satellites in use; null when not reported.", "count", null=True),
            "hdop": f("number", "Horizontal dilution of precision; null when not reported.", null=True),
            "latitude": f("number", "Latest latitude (WGS84); null without a fix.", "deg", null=True),
            "longitude": f("number", "Latest longitude (WGS84); null without a fix.", "deg", null=True),
            "clock_offset_s": f(
                "number", "System clock minus GPS time; null when not measured.", "s", null=True
            ),
            "clock_trusted": f(
                "boolean", "|clock_offset_s| within clock_tolerance_s; null when not measured.", null=True
            ),
        },
    )
