"""The event message: a gap (messages pruned before delivery) or a road-safety incident."""

from __future__ import annotations

from agent.sync.contract.fields import INT0, document, envelope, f, obj, ts


def incident_clock() -> dict:
    """How far an incident's times can be trusted when it was raised."""
    return obj(
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
            "clock": incident_clock(),
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
