"""The hub contract: the strict JSON Schemas of every payload, generated from this one file.

``python -m agent.sync.contract`` writes ``docs/schemas/*.schema.json``; a test keeps the committed
files equal to what this module builds, and ``scripts/mqtt_docs.py`` turns them into the field tables
of ``docs/mqtt.md``. Every field has a type, a meaning, a unit where it has one (``x-unit``) and says
whether it may be null. Objects whose shape is ours have ``additionalProperties: false``; maps keyed
by names (cameras, lines, labels, sensors, metrics) declare their value schema.

Versioning (semver, ``schema_version`` in every payload, the major also in ``schema``):
MAJOR: a field removed, renamed, retyped or made required, a meaning changed (the ``schema`` id
changes, e.g. ``edge-agent/summary/2``); MINOR: an optional field, a section or an enum value added
(a strict validator must use the schemas of the message's minor or later, which accept every older
payload); PATCH: descriptions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.sync.topics import SCHEMA_VERSION

MAJOR = SCHEMA_VERSION.split(".")[0]
BASE_URI = "https://edge-agent.example/schemas"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


# -- small builders ---------------------------------------------------------------------------------
def f(type_: str | list[str], desc: str, unit: str | None = None, null: bool = False, **kw: Any) -> dict:
    """A scalar field. ``null``: the value may be null (with the reason in ``desc``)."""
    types = [type_] if isinstance(type_, str) else list(type_)
    if null:
        types.append("null")
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types, "description": desc}
    if unit:
        out["x-unit"] = unit
    out.update(kw)
    return out


def obj(desc: str, props: dict[str, dict], optional: tuple[str, ...] = (), null: bool = False) -> dict:
    """A closed object: every property required unless named in ``optional``."""
    out: dict[str, Any] = {
        "type": ["object", "null"] if null else "object",
        "description": desc,
        "additionalProperties": False,
        "required": [k for k in props if k not in optional],
        "properties": props,
    }
    return out


def mapof(desc: str, value: dict, key: str = "name", pattern: str | None = None) -> dict:
    """A map keyed by names (``x-key`` names what the key is)."""
    out: dict[str, Any] = {"type": "object", "description": desc, "x-key": key, "additionalProperties": value}
    if pattern:
        out["propertyNames"] = {"pattern": pattern}
    return out


def arr(desc: str, items: dict, **kw: Any) -> dict:
    return {"type": "array", "description": desc, "items": items, **kw}


def ts(desc: str, null: bool = False) -> dict:
    return f("string", desc + " (UTC, ISO-8601 with milliseconds)", null=null, pattern=TS)


INT0 = {"minimum": 0}


def counts_by_class(desc: str) -> dict:
    """``{line: {direction: {class: n}}}``."""
    return mapof(
        desc,
        mapof(
            "Per direction.",
            mapof(
                "Per class.",
                f(
                    "integer",
                    "Vehicles. With privacy.small_counts mode dp, a protected class's count carries Laplace noise and may be negative (see the payload's privacy declaration).",
                    "vehicles",
                ),
                "class",
            ),
            "direction",
        ),
        "line",
    )


def envelope(kind: str, seq: bool = True) -> dict[str, dict]:
    props: dict[str, dict] = {
        "schema": {"const": f"edge-agent/{kind}/{MAJOR}", "description": "Payload kind and contract major."},
        "schema_version": f(
            "string", "Contract version (semver) the payload follows.", pattern=r"^\d+\.\d+\.\d+$"
        ),
    }
    if seq:
        props["seq"] = f(
            "integer",
            "Per-device message sequence: +1 per outbox message, survives restarts, never reused.",
            minimum=1,
        )
    props.update(
        {
            "device": f("string", "Device id (device.id, also the MQTT client id).", pattern=NAME),
            "site": f("string", "Site (device.site).", pattern=NAME),
            "ts": ts("When the payload was written"),
            "session": f(
                "integer",
                "Connection session (like Sparkplug bdSeq) that sent it: +1 per connection attempt. Added at publish time (not in the stored outbox text).",
                minimum=0,
            ),
        }
    )
    if seq:
        props["replay"] = {
            "const": True,
            "description": "Present (true) only on a re-send by a replay command.",
        }
    return props


def document(kind: str, title: str, desc: str, schema: dict) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE_URI}/{kind}.schema.json",
        "title": title,
        "description": desc,
        "x-schema-version": SCHEMA_VERSION,
        **schema,
    }


# -- sections shared by summary and health ---------------------------------------------------------
def health_readings() -> dict:
    return obj(
        "The unit's own health at the time of writing.",
        {
            "cpu_temp_c": f("number", "Hottest thermal zone; null where none is readable.", "°C", null=True),
            "load_1m": f("number", "Load average, 1 minute; null where unreadable.", null=True),
            "load_5m": f("number", "Load average, 5 minutes; null where unreadable.", null=True),
            "mem_available_mb": f("number", "MemAvailable; null where unreadable.", "MiB", null=True),
            "mem_total_mb": f("number", "MemTotal; null where unreadable.", "MiB", null=True),
            "disk_free_mb": f(
                "number", "Free space on the database's file system; null where unreadable.", "MiB", null=True
            ),
            "db_bytes": f(
                "integer", "Database file size with -wal and -shm; null where unreadable.", "bytes", null=True
            ),
            "db_used_bytes": f(
                "integer", "Database pages in use (what storage.max_db_mb counts).", "bytes", null=True
            ),
            "outbox_backlog": f(
                "integer", "Undelivered outbox messages; null where unreadable.", "messages", null=True
            ),
            "pruned": mapof(
                "Rows removed over the storage budget, by class: detections, delivered, undelivered (summaries), other.",
                f("integer", "Rows pruned since the database was created.", "rows", **INT0),
                "class",
            ),
            "uptime_s": f("number", "Agent uptime.", "s"),
            "system_uptime_s": f("number", "System uptime; null where unreadable.", "s", null=True),
            "clock_synced": f("boolean", "The kernel says NTP/GPS synchronised the clock (adjtimex)."),
        },
    )


def counts_section() -> dict:
    return obj(
        "Detections per camera and label in the window (core tables).",
        {
            "cameras": mapof(
                "Per camera.",
                obj(
                    "One camera.",
                    {
                        "frames": f("integer", "Frames inferred in the window.", "frames", **INT0),
                        "labels": mapof(
                            "Per label.",
                            obj(
                                "One label.",
                                {
                                    "detections": f(
                                        "integer",
                                        "Detections (boxes) in the window; null for a protected class in small_counts mode dp (only its noisy object count is published).",
                                        "boxes",
                                        null=True,
                                        **INT0,
                                    ),
                                    "objects": f(
                                        "integer",
                                        "Distinct tracked objects; null when the camera has no tracking (analytics off), never 0 for unknown. In small_counts mode dp a protected class's value is noisy and may be negative.",
                                        "objects",
                                        null=True,
                                    ),
                                },
                            ),
                            "label",
                        ),
                    },
                ),
                "camera",
            )
        },
    )


def inference_section() -> dict:
    return obj(
        "Inference figures per camera in the window (from the 10 s statistics rows).",
        {
            "cameras": mapof(
                "Per camera.",
                obj(
                    "One camera.",
                    {
                        "frames": f("integer", "Frames inferred.", "frames", **INT0),
                        "fps": f(
                            "number",
                            "Inferred frames per second; null when no time elapsed.",
                            "1/s",
                            null=True,
                        ),
                        "latency_p50_ms": f(
                            "number",
                            "Median inference latency, frame-weighted; null without frames.",
                            "ms",
                            null=True,
                        ),
                        "latency_p95_ms": f(
                            "number", "95th percentile latency; null without frames.", "ms", null=True
                        ),
                        "model": f("string", "Model name (catalog name or file stem)."),
                        "accelerator": f("string", "Accelerator that ran it: cpu, edgetpu, gpu or delegate."),
                        "detections": f("integer", "Detections.", "boxes", **INT0),
                        "dropped_frames": f(
                            "integer",
                            "Frames not inferred because the pipeline was behind.",
                            "frames",
                            **INT0,
                        ),
                        "dropped_writes": f("integer", "Rows the writer could not accept.", "rows", **INT0),
                    },
                ),
                "camera",
            )
        },
    )


def pct_obj(desc: str, unit: str, p50: str = "p50", p85: str = "p85") -> dict:
    return obj(
        desc,
        {
            p50: f("number", "Median; null without values.", unit, null=True),
            p85: f("number", "85th percentile; null without values.", unit, null=True),
            "n": f("integer", "Values.", "values", **INT0),
        },
    )


def analytics_section() -> dict:
    forecast = obj(
        "One horizon of the latest forecast.",
        {
            "horizon_min": f("integer", "Horizon.", "min", **INT0),
            "from": ts("Start of the forecast period"),
            "to": ts("End of the forecast period"),
            "expected": f("number", "Expected vehicles in the period.", "vehicles"),
            "backtest": obj(
                "Rolling backtest error of this horizon.",
                {
                    "mae": f(
                        "number", "Mean absolute error; null before enough history.", "vehicles", null=True
                    ),
                    "mape": f(
                        "number",
                        "Mean absolute percentage error; null before enough history.",
                        "%",
                        null=True,
                    ),
                    "n": f("integer", "Forecasts scored.", "forecasts", null=True, **INT0),
                },
            ),
        },
    )
    camera = obj(
        "One camera's analytics (never boxes or images).",
        {
            "volumes": counts_by_class(
                "Line crossings in the window: {line: {direction: {class: vehicles}}}."
            ),
            "bins": arr(
                "Bins (bin_minutes long, aligned to UTC midnight) committed or changed since the previous summary,"
                " whatever window they belong to: each carries its own start and length. A bin is re-sent whole,"
                " with a higher rev, whenever it changes (a crossing resolved late, a restart continuing it);"
                " a hub keeps, per unit, camera and bin start, the version with the highest rev (docs/mqtt.md,"
                " late and re-sent bins).",
                obj(
                    "One bin.",
                    {
                        "start": ts("Bin start"),
                        "minutes": f("integer", "Bin length.", "min", minimum=1),
                        "coverage": f(
                            "number",
                            "Fraction of the bin the camera was counting (0..1; <1 after a restart or outage).",
                            "fraction",
                            minimum=0,
                            maximum=1,
                        ),
                        "counts": counts_by_class(
                            "Vehicles per line, direction and class (a class with 0 is left out)."
                        ),
                        "rev": f(
                            "integer",
                            "Revision of this bin on the unit (since 2.1.0): grows each time the bin changes;"
                            " a higher rev replaces the whole bin (all its counts and zones) of a lower one.",
                            minimum=1,
                        ),
                        "late": f(
                            "boolean",
                            "The bin ended before window.start (since 2.1.0): it amends an earlier window"
                            " (committed after that window's summary was built, or changed since).",
                        ),
                        "zones": mapof(
                            "Zone figures of the bin (since 2.1.0; only for cameras with zones).",
                            obj(
                                "One zone in the bin.",
                                {
                                    "peak": f("integer", "Most objects at once.", "objects", **INT0),
                                    "entries": f("integer", "Objects that entered.", "objects", **INT0),
                                    "occupancy_mean": f(
                                        "number",
                                        "Mean objects in the zone over the observed part of the bin;"
                                        " null without observed time.",
                                        "objects",
                                        null=True,
                                        minimum=0,
                                    ),
                                },
                            ),
                            "zone",
                        ),
                    },
                    optional=("rev", "late", "zones"),
                ),
            ),
            "zones": mapof(
                "Per zone.",
                obj(
                    "One zone.",
                    {
                        "peak": f(
                            "integer",
                            "Most objects at once in a zone bin starting in the window.",
                            "objects",
                            **INT0,
                        ),
                        "entries": f(
                            "integer",
                            "Objects that entered (zone bins starting in the window).",
                            "objects",
                            **INT0,
                        ),
                        "dwell_s": pct_obj("Dwell time of the objects that left in the window.", "s"),
                    },
                    optional=("peak", "entries", "dwell_s"),
                ),
                "zone",
            ),
            "speeds": mapof(
                "Speeds of the tracks measured in the window, by source (zone:NAME or segment:NAME).",
                pct_obj("One source.", "km/h", "p50_kmh", "p85_kmh"),
                "source",
            ),
            "forecasts": mapof(
                "Latest forecast per line and direction.",
                mapof("Per direction.", arr("Horizons.", forecast), "direction"),
                "line",
            ),
        },
    )
    return obj("Traffic analytics per camera.", {"cameras": mapof("Per camera.", camera, "camera")})


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


def sensors_section() -> dict:
    metric = obj(
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
    sensor = obj(
        "One serial sensor.",
        {
            "driver": f(
                "string",
                "Driver: pms5003, pms7003, sds011, nmea, ops243, mcu; null before its first health row.",
                null=True,
            ),
            "metrics": mapof("Per metric (pm2_5, pm10, speed_inbound, latitude, ...).", metric, "metric"),
            "health": obj(
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
            ),
            "aqi": obj(
                "PM sensors only: the US EPA AQI.",
                {
                    "table": {
                        "enum": ["epa-2024", "epa-2012"],
                        "description": "Breakpoint table (sensors.aqi_table).",
                    },
                    "current": aqi_result(
                        "Current AQI: NowCast over the 12 complete UTC hours before the window end (aqi_nowcast = false: the window mean, not an EPA AQI).",
                        ["nowcast", "window_mean"],
                    ),
                    "daily": aqi_result(
                        "Daily AQI: 24-hour mean of the last complete UTC day (18 of 24 hours needed).",
                        ["24h_mean"],
                    ),
                },
            ),
        },
        optional=("aqi",),
    )
    sensor["properties"]["aqi"]["properties"]["current"]["required"] = [
        k
        for k in sensor["properties"]["aqi"]["properties"]["current"]["required"]
        if k not in ("from", "hours_valid")
    ]
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


# -- message kinds ---------------------------------------------------------------------------------
def small_counts_declaration() -> dict:
    """The small-count rule applied to per-class counts (agent.privacy.smallcount)."""
    return obj(
        "Small-count protection of per-class counts (person, bicycle by default). suppress/merge: an absent protected bin means 0 or below k; dp: protected counts carry Laplace noise (may be negative).",
        {
            "scheme": {"const": "edge-agent/small-counts/1", "description": "Version of the rule's declaration."},
            "mode": {"enum": ["off", "suppress", "merge", "dp"], "description": "The rule applied."},
            "k": mapof(
                "suppress/merge: per protected class, the least count published.",
                f("integer", "k.", "count", minimum=2),
                "class",
            ),
            "merge_class": f("string", "merge: the class name of merged small bins."),
            "absent_means": f("string", "suppress/merge: what an absent protected bin means."),
            "mechanism": {"const": "laplace", "description": "dp: the noise mechanism."},
            "epsilon": f("number", "dp: privacy budget per bin.", exclusiveMinimum=0),
            "sensitivity": f("number", "dp: sensitivity of a count."),
            "scale": f("number", "dp: Laplace scale (sensitivity / epsilon)."),
            "rounded": f("boolean", "dp: noisy counts are rounded to integers."),
            "classes": arr("dp: the protected classes.", f("string", "A class.")),
            "note": f("string", "A plain-language note for the hub."),
        },
        optional=(
            "k", "merge_class", "absent_means", "mechanism", "epsilon", "sensitivity", "scale",
            "rounded", "classes", "note",
        ),
    )  # fmt: skip


def incidents_section() -> dict:
    fusion_bin = obj(
        "One closed bin of radar fusion figures.",
        {
            "sensor": f("string", "The OPS243 sensor."),
            "bin_start": ts("Bin start"),
            "bin_s": f("integer", "Bin length.", "s", minimum=1),
            "crossings": f("integer", "Crossings of the radar's line.", "vehicles", **INT0),
            "readings": f("integer", "Radar speed readings.", "readings", **INT0),
            "matched": f("integer", "Crossings given a radar speed.", "vehicles", **INT0),
            "radar_unmatched": f("integer", "Readings no crossing claimed.", "readings", **INT0),
            "crossings_unmatched": f("integer", "Crossings with no reading.", "vehicles", **INT0),
            "radar_mean_kmh": f("number", "Mean radar speed of the matched crossings.", "km/h", null=True),
            "vision_mean_kmh": f(
                "number", "Mean vision speed of the same (calibrated cameras).", "km/h", null=True
            ),
            "mean_abs_diff_kmh": f("number", "Mean |vision - radar|.", "km/h", null=True),
            "mean_ratio": f("number", "Mean vision / radar.", "ratio", null=True),
            "rev": f(
                "integer",
                "Revision of this bin on the unit (since 2.1.0): a higher rev replaces the whole bin.",
                minimum=1,
            ),
            "late": f(
                "boolean",
                "The bin ended before window.start (since 2.1.0): it amends an earlier window.",
            ),
        },
        optional=("rev", "late"),
    )
    camera = obj(
        "One camera's incidents.",
        {
            "started": mapof(
                "Incidents started in the window, by kind.", f("integer", "Incidents.", **INT0), "kind"
            ),
            "active": f("integer", "Incidents still open at the end of the window.", **INT0),
            "radar": arr(
                "Radar fusion bins committed or changed since the previous summary, whatever window they"
                " belong to (empty without a radar); a hub keeps, per unit, camera, sensor and bin start,"
                " the one with the highest rev.",
                fusion_bin,
            ),
        },
    )
    return obj(
        "Road-safety incidents and radar fusion per camera (docs/incidents.md).",
        {"cameras": mapof("Per camera.", camera, "camera")},
    )


def summary_schema() -> dict:
    props = envelope("summary")
    props.update(
        {
            "window": obj(
                "The window summarised: [start, end), aligned to the UTC clock.",
                {
                    "start": ts("Window start"),
                    "end": ts("Window end (exclusive)"),
                    "seconds": f("number", "Window length.", "s", exclusiveMinimum=0),
                },
            ),
            "clock_synced": f(
                "boolean", "The clock was synchronised (NTP/GPS) when the summary was written."
            ),
            "catchup": f("boolean", "Written at start for a window that ended while the agent was down."),
            "agent_version": f("string", "Agent version that wrote it."),
            "sections": obj(
                "One entry per analysis part; a part with nothing to say in the window is left out.",
                {
                    "counts": counts_section(),
                    "inference": inference_section(),
                    "health": health_readings(),
                    "analytics": analytics_section(),
                    "sensors": sensors_section(),
                    "gps": gps_section(),
                    "incidents": incidents_section(),
                },
                optional=("counts", "inference", "health", "analytics", "sensors", "gps", "incidents"),
            ),
            "privacy": obj(
                "What the unit did to protect people in this payload (docs/privacy.md).",
                {"small_counts": small_counts_declaration()},
                optional=("small_counts",),
            ),
            "errors": mapof(
                "Sections that failed in this window (name -> error); the others are still sent.",
                f("string", "The error."),
                "section",
            ),
        }
    )
    return document(
        "summary",
        "Summary of one window",
        "Published on {prefix}/{site}/{device}/summary, QoS 1, not retained, through the outbox.",
        obj("A summary.", props, optional=("replay", "errors", "privacy")),
    )


def sync_brief() -> dict:
    return obj(
        "The MQTT link.",
        {
            "connected": f("boolean", "Connected to the broker."),
            "backlog": f("integer", "Undelivered messages.", "messages", **INT0),
            "in_flight": f("integer", "Messages waiting for their PUBACK.", "messages", **INT0),
            "reconnects": f("integer", "Reconnections since start.", **INT0),
            "last_error": f("string", "Last connection error; null when none.", null=True),
            "session": f("integer", "Current session.", **INT0),
        },
    )


def writer_stats() -> dict:
    return obj(
        "The database writer.",
        {
            "pending": f("integer", "Writes queued.", "writes", **INT0),
            "committed_rows": f("integer", "Rows committed since start.", "rows", **INT0),
            "batches": f("integer", "Transactions since start.", **INT0),
            "dropped": mapof(
                "Writes refused (queue full), by kind.", f("integer", "Writes.", **INT0), "kind"
            ),
            "failed": mapof("Writes failed, by kind.", f("integer", "Writes.", **INT0), "kind"),
            "disk_full": f("boolean", "The disk is full (the batch is kept and retried)."),
            "last_error": f("string", "Last error; null when none.", null=True),
            "alive": f("boolean", "The writer thread runs."),
        },
    )


def model_entry() -> dict:
    return obj(
        "One loaded model.",
        {
            "accelerator": f("string", "Accelerator it runs on: cpu, edgetpu, gpu or delegate."),
            "fallback_reasons": arr(
                "Why the better accelerators were skipped (empty: none was).", {"type": "string"}
            ),
            "family": f(
                "string", "Model family (ssd, yolo, classify, recurrent); null if unknown.", null=True
            ),
        },
    )


def pipeline_schema() -> dict:
    cam = obj(
        "One camera.",
        {
            "state": f("string", "up, reconnecting, down or stopped."),
            "kind": f("string", "Source kind: file, rtsp, http, device, csi."),
            "fps": f("number", "Recent inferred frames per second; null before the first.", "1/s", null=True),
            "frames_read": f("integer", "Frames read since start.", "frames", **INT0),
            "frames_inferred": f("integer", "Frames inferred since start.", "frames", **INT0),
            "reconnects": f("integer", "Source reconnections.", **INT0),
            "last_error": f("string", "Last source error; null when none.", null=True),
            "model": f("string", "Model of this camera."),
            "latency_p50_ms": f(
                "number", "Recent median latency; null before the first frame.", "ms", null=True
            ),
            "latency_p95_ms": f(
                "number", "Recent 95th percentile latency; null before the first frame.", "ms", null=True
            ),
            "resolution": f(
                "array",
                "[width, height]; null before the first frame.",
                "px",
                null=True,
                items={"type": "integer"},
            ),
        },
    )
    sensor = obj(
        "One serial sensor's live state.",
        {
            "connected": f("boolean", "The port is open."),
            "last_reading_ts": ts("Latest reading", null=True),
            "frames_ok": f("integer", "Valid frames since start.", "frames", **INT0),
            "frames_bad": f("integer", "Invalid frames since start.", "frames", **INT0),
            "resyncs": f("integer", "Decoder resynchronisations.", **INT0),
            "reconnects": f("integer", "Port reopenings.", **INT0),
            "rows_dropped": f("integer", "Readings the writer refused.", "rows", **INT0),
            "last_error": f("string", "Last error; null when none.", null=True),
        },
    )
    analytics = obj(
        "One camera's live analytics.",
        {
            "active_tracks": f("integer", "Confirmed tracks now.", "objects", **INT0),
            "bin_start": ts("Start of the bin being counted", null=True),
            "bin_minutes": f("integer", "Bin length.", "min", minimum=1),
            "current_bin": counts_by_class("Counts so far in the current bin."),
            "since_start": counts_by_class("Counts since the agent started."),
            "zones": mapof(
                "Per zone.",
                obj(
                    "One zone.",
                    {
                        "occupancy": f("integer", "Objects in the zone now.", "objects", **INT0),
                        "peak": f("integer", "Most at once in the current bin.", "objects", **INT0),
                    },
                ),
                "zone",
            ),
            "speed_kmh": pct_obj("Recent speeds.", "km/h"),
        },
    )
    return obj(
        "The pipeline's live state (a stable projection of the status API; the API has more).",
        {
            "version": f("string", "Agent version."),
            "config_hash": f("string", "Hash of the effective config."),
            "uptime_s": f("number", "Pipeline uptime.", "s"),
            "pending_restart": arr("Config changes read but only applied at a restart.", {"type": "string"}),
            "cameras": mapof("Per camera.", cam, "camera"),
            "models": mapof("Per loaded model.", model_entry(), "model"),
            "model_errors": mapof(
                "Models that could not be loaded: name -> error.", f("string", "The error."), "model"
            ),
            "sensors": mapof("Per serial sensor.", sensor, "sensor"),
            "analytics": mapof("Per camera with analytics.", analytics, "camera"),
        },
        optional=("cameras", "models", "model_errors", "sensors", "analytics", "pending_restart"),
    )


def health_schema() -> dict:
    props = envelope("health")
    props.update(
        {
            "health": health_readings(),
            "sync": sync_brief(),
            "writer": writer_stats(),
            "pipeline": pipeline_schema(),
        }
    )
    return document(
        "health",
        "Health message",
        "On {prefix}/{site}/{device}/health every mqtt.health_interval_s, QoS 1, through the outbox (live priority).",
        obj("A health message.", props, optional=("replay", "pipeline")),
    )


def incident_data() -> dict:
    """The ``data`` of an ``incident`` event (docs/incidents.md)."""
    return obj(
        "A road-safety incident: one id from start to end; each phase is its own message.",
        {
            "id": f("string", "Incident id, the same in every phase.", pattern="^[0-9a-f]{32}$"),
            "phase": {
                "enum": ["start", "update", "end"],
                "description": "start once, update every update_s while it lasts, end once.",
            },
            "kind": {
                "enum": ["wrong_way", "stopped_vehicle", "pedestrian_on_carriageway", "queue"],
                "description": "The rule's kind.",
            },
            "rule": f("string", "The configured rule's name."),
            "camera": f("string", "Camera."),
            "zone": f("string", "The zone the rule watches."),
            "track_id": f("integer", "The camera's track id of the road user; null for queue.", null=True),
            "class": f("string", "Its class; null for queue.", null=True),
            "start": ts("When the condition began (dwell rules: when the dwell started)"),
            "end": ts("End time, in the end phase only; else null", null=True),
            "duration_s": f("number", "From start to this message (or to end).", "s", **INT0),
            "speed_kmh": f(
                "number",
                "Speed through the ground-plane calibration; null without calibration. queue: the median of the vehicles in the zone.",
                "km/h",
                null=True,
            ),
            "speed_rel": f(
                "number", "Speed in box heights per second (a car is about 1.5 m tall).", "1/s", null=True
            ),
            "heading_deg": f(
                "number", "Direction of travel in the image: 0 = right, 90 = down.", "deg", null=True
            ),
            "direction": f(
                "string", "wrong_way on a line: the line direction travelled; else null.", null=True
            ),
            "vehicles": f(
                "integer", "queue: vehicles in the zone; else null.", "vehicles", null=True, **INT0
            ),
            "queue_length_m": f(
                "number", "queue: estimated length (calibrated cameras); else null.", "m", null=True
            ),
            "end_reason": {
                "enum": [None, "left_zone", "moved", "lost", "dissolved", "stopped"],
                "description": "end phase: why it ended (stopped: the agent stopped or the rule was reconfigured); null before.",
            },
            "clock": obj(
                "How far the times can be trusted when the event was raised.",
                {
                    "quality": {
                        "enum": ["gps", "ntp", "untrusted", "unsynchronised", "unknown"],
                        "description": "gps: NMEA time agrees; ntp: kernel clock synchronised; untrusted: GPS says the clock is off; unsynchronised: neither.",
                    },
                    "trusted": f("boolean", "Whether the time can be trusted; null when unknown.", null=True),
                    "source": {"enum": ["gps", "kernel"], "description": "Where the quality comes from."},
                    "offset_s": f("number", "System clock minus GPS time.", "s", null=True),
                    "error": f("string", "Why the quality is unknown."),
                },
                optional=("source", "offset_s", "error"),
            ),
        },
    )


def gap_data() -> dict:
    return obj(
        "A gap: a range of undelivered messages pruned over the storage budget.",
        {
            "from_seq": f("integer", "First seq pruned.", minimum=1),
            "to_seq": f("integer", "Last seq pruned.", minimum=1),
            "count": f("integer", "Messages pruned in the range.", "messages", minimum=1),
            "kind": f("string", "Kind of the pruned messages (summary)."),
            "reason": f("string", "Why (storage budget)."),
        },
    )


def event_schema() -> dict:
    props = envelope("event")
    props.update(
        {
            "type": {
                "enum": ["gap", "incident"],
                "description": "gap: messages pruned before delivery; incident: a road-safety incident (docs/incidents.md).",
            },
            "data": {
                "anyOf": [gap_data(), incident_data()],
                "description": "By type: a gap or an incident (the allOf branches tie each to its type).",
            },
        }
    )
    base = obj("An event.", props, optional=("replay",))
    base["allOf"] = [
        {"if": {"properties": {"type": {"const": t}}}, "then": {"properties": {"data": d}}}
        for t, d in (("gap", gap_data()), ("incident", incident_data()))
    ]
    return document(
        "event",
        "Event (alert)",
        "On {prefix}/{site}/{device}/event, QoS 1, through the outbox (live priority).",
        base,
    )


def status_schema() -> dict:
    props = envelope("status", seq=False)
    props.update(
        {
            "state": {
                "enum": ["online", "offline"],
                "description": "online: the birth; offline: the last will or a clean stop.",
            },
            "reason": f("string", "offline only: 'stopped' or 'connection lost (last will)'."),
            "agent_version": f("string", "online only: agent version."),
            "model": f("string", "online only: the default model (inference.model)."),
            "accelerator": f(
                "string",
                "online only: accelerator the default model runs on (else the first loaded model's); null when no model is loaded.",
                null=True,
            ),
            "models": mapof(
                "online only: per loaded model, its accelerator and fallback reasons.", model_entry(), "model"
            ),
            "model_errors": mapof(
                "online only: models that failed to load: name -> error.", f("string", "The error."), "model"
            ),
            "accelerator_fallback": obj(
                "online only: set while the main model runs below the accelerator it started on, after that accelerator was lost mid-run (repeated invoke errors); null when it runs where it started.",
                {
                    "lost": f("string", "The accelerator lost (edgetpu, gpu, delegate)."),
                    "since": f("number", "When it was lost (Unix time).", "s"),
                    "reason": f("string", "The invoke error."),
                    "probes": f("integer", "Re-probes so far.", **INT0),
                    "next_probe_in_s": f("number", "Seconds to the next re-probe.", "s", null=True),
                },
                optional=("probes", "next_probe_in_s"),
                null=True,
            ),
            "config_hash": f("string", "online only: hash of the effective config."),
            "seq_last": f("integer", "online only: last seq assigned; null before the first.", null=True),
            "seq_first_pending": f(
                "integer",
                "online only: lowest undelivered seq at connect (a hub's baseline); null before the first message.",
                null=True,
            ),
            "summary_interval_s": f("number", "online only: summary.interval_s.", "s"),
            "mqtt_protocol": {"enum": ["3.1.1", "5"], "description": "online only: MQTT protocol version."},
        }
    )
    online = [
        "agent_version", "model", "accelerator", "models", "model_errors", "config_hash",
        "seq_last", "seq_first_pending", "summary_interval_s", "mqtt_protocol",
    ]  # fmt: skip
    base = obj("A status.", props, optional=tuple(["reason", "accelerator_fallback", *online]))
    base["allOf"] = [
        {
            "if": {"properties": {"state": {"const": "online"}}},
            "then": {"required": online, "not": {"required": ["reason"]}},
        },
        {
            "if": {"properties": {"state": {"const": "offline"}}},
            "then": {"required": ["reason"], "not": {"anyOf": [{"required": [k]} for k in online]}},
        },
    ]
    return document(
        "status",
        "Device status (birth and death)",
        "Retained, QoS 1, on {prefix}/{site}/{device}/status. A hub ignores an offline status whose session is lower than the session it holds as online.",
        base,
    )


def command_schema() -> dict:
    return document(
        "command",
        "Command request (hub to unit)",
        "On {prefix}/{site}/{device}/cmd/{name}, QoS 1. The reply goes to .../cmd/{name}/reply.",
        obj(
            "A command request.",
            {
                "schema": {
                    "const": f"edge-agent/command/{MAJOR}",
                    "description": "Optional; the agent does not require it (older hubs send edge-agent/command/1).",
                },
                "id": f(
                    ["string", "integer"],
                    "Correlation id, copied to the reply (MQTT 5 Correlation Data is copied too).",
                    null=True,
                ),
                "args": {
                    "type": "object",
                    "description": "Arguments of the command (replay: from_seq, to_seq).",
                },
            },
            optional=("schema", "id", "args"),
        ),
    )


def reply_schema() -> dict:
    props = envelope("reply", seq=False)
    props["schema_version"] = dict(props["schema_version"])
    props.update(
        {
            "command": f("string", "The command answered."),
            "id": f(
                ["string", "integer"], "The request's id; null when it had none or was not JSON.", null=True
            ),
            "ok": f("boolean", "true: result; false: error."),
            "result": {"type": "object", "description": "The command's result (see the commands table)."},
            "error": obj(
                "Why it failed.",
                {
                    "code": {
                        "enum": [
                            "bad_json",
                            "bad_request",
                            "unknown_command",
                            "disabled",
                            "busy",
                            "too_large",
                            "failed",
                        ],
                        "description": "Error code.",
                    },
                    "message": f("string", "What went wrong and what to do."),
                },
            ),
        }
    )
    base = obj("A reply.", props, optional=("result", "error"))
    base["allOf"] = [
        {"if": {"properties": {"ok": {"const": True}}}, "then": {"required": ["result"]}},
        {"if": {"properties": {"ok": {"const": False}}}, "then": {"required": ["error"]}},
    ]
    return document(
        "reply", "Command reply", "On {prefix}/{site}/{device}/cmd/{name}/reply, QoS 1, not retained.", base
    )


SCHEMAS = {
    "summary": summary_schema,
    "health": health_schema,
    "event": event_schema,
    "status": status_schema,
    "command": command_schema,
    "reply": reply_schema,
}


def build() -> dict[str, dict]:
    return {k: fn() for k, fn in SCHEMAS.items()}


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# -- the health message's pipeline projection ------------------------------------------------------
def _pick(d: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    d = d if isinstance(d, dict) else {}
    return {k: d.get(k) for k in keys}


def pipeline_projection(live: dict[str, Any]) -> dict[str, Any]:
    """The declared part of the pipeline's status for the health message (see ``pipeline_schema``)."""
    if not live or "version" not in live:
        return {}
    cam_keys = tuple(pipeline_schema()["properties"]["cameras"]["additionalProperties"]["properties"])
    sen_keys = tuple(pipeline_schema()["properties"]["sensors"]["additionalProperties"]["properties"])
    out: dict[str, Any] = {
        "version": live.get("version"),
        "config_hash": live.get("config_hash"),
        "uptime_s": live.get("uptime_s"),
        "pending_restart": [str(x) for x in live.get("pending_restart") or []],
        "cameras": {n: _pick(c, cam_keys) for n, c in (live.get("cameras") or {}).items()},
        "models": {
            n: {
                "accelerator": m.get("accelerator"),
                "fallback_reasons": list(m.get("reasons") or []),
                "family": m.get("family"),
            }
            for n, m in (live.get("models") or {}).items()
            if isinstance(m, dict)
        },
        "model_errors": {str(k): str(v) for k, v in (live.get("model_errors") or {}).items()},
    }
    for c in out["cameras"].values():
        for k in ("frames_read", "frames_inferred", "reconnects"):
            c[k] = int(c.get(k) or 0)
    sensors = live.get("sensors")
    if isinstance(sensors, dict) and "error" not in sensors:
        out["sensors"] = {n: _pick(s, sen_keys) for n, s in sensors.items() if isinstance(s, dict)}
        for s in out["sensors"].values():
            s["connected"] = bool(s.get("connected"))
            for k in ("frames_ok", "frames_bad", "resyncs", "reconnects", "rows_dropped"):
                s[k] = int(s.get(k) or 0)
    analytics = live.get("analytics")
    if isinstance(analytics, dict):
        keys = (
            "active_tracks",
            "bin_start",
            "bin_minutes",
            "current_bin",
            "since_start",
            "zones",
            "speed_kmh",
        )
        out["analytics"] = {
            n: _pick(a, keys) for n, a in analytics.items() if isinstance(a, dict) and "error" not in a
        }
    return out


def main() -> None:  # python -m agent.sync.contract [DIR]: write the schemas
    import sys

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "schemas"
    out.mkdir(parents=True, exist_ok=True)
    for kind, schema in build().items():
        (out / f"{kind}.schema.json").write_text(render(schema))
        print(f"wrote {out / f'{kind}.schema.json'}")


if __name__ == "__main__":
    main()
