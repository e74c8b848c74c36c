"""The summary message: its window, sections (counts, inference, health, analytics, sensors, GPS,
incidents) and privacy declaration."""

from __future__ import annotations

from agent.sync.contract.analytics import analytics_section
from agent.sync.contract.fields import INT0, arr, document, envelope, f, mapof, obj, ts
from agent.sync.contract.health import health_readings
from agent.sync.contract.sensors import gps_section, sensors_section


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
