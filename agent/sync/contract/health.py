"""The health message: the unit's readings, the MQTT link, the writer and the pipeline's live state,
and the projection of the pipeline's status onto that declared shape."""

from __future__ import annotations

from typing import Any

from agent.sync.contract.fields import (
    INT0,
    arr,
    counts_by_class,
    document,
    envelope,
    f,
    mapof,
    obj,
    pct_obj,
    ts,
)


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


def pipeline_camera() -> dict:
    """One camera's live state in the pipeline projection."""
    return obj(
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


def pipeline_sensor() -> dict:
    """One serial sensor's live state in the pipeline projection."""
    return obj(
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


def pipeline_analytics() -> dict:
    """One camera's live analytics in the pipeline projection."""
    return obj(
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


def pipeline_schema() -> dict:
    return obj(
        "The pipeline's live state (a stable projection of the status API; the API has more).",
        {
            "version": f("string", "Agent version."),
            "config_hash": f("string", "Hash of the effective config."),
            "uptime_s": f("number", "Pipeline uptime.", "s"),
            "pending_restart": arr("Config changes read but only applied at a restart.", {"type": "string"}),
            "cameras": mapof("Per camera.", pipeline_camera(), "camera"),
            "models": mapof("Per loaded model.", model_entry(), "model"),
            "model_errors": mapof(
                "Models that could not be loaded: name -> error.", f("string", "The error."), "model"
            ),
            "sensors": mapof("Per serial sensor.", pipeline_sensor(), "sensor"),
            "analytics": mapof("Per camera with analytics.", pipeline_analytics(), "camera"),
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
