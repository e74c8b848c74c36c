"""NGSI-LD encoding of our data in the FIWARE Smart Data Models: one function per entity type.

* :func:`traffic_flow_entities` — ``TrafficFlowObserved``: one entity per camera, line, direction,
  bin and vehicle class (``vehicleType``), plus one for all classes together (no ``vehicleType``).
* :func:`air_quality_entities` — ``AirQualityObserved``: one entity per PM sensor per UTC hour.

Both take plain rows (see :mod:`agent.ngsi_ld.source` for where they come from) and return
key-values entities; :func:`normalized` turns one into the normalized form. Ids are stable URNs
built only from what the entity describes, so re-sending is an idempotent upsert. docs/ngsi-ld.md
maps every attribute.

The bins pass through :func:`traffic_flow_entities` only, so a filter (e.g. small-count
protection) can wrap that one function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRANSPORTATION_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld"
)
ENVIRONMENT_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"
)
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"

#: our (COCO) class names -> the Smart Data Models vehicleType enum; other classes are not vehicles
VEHICLE_TYPES = {
    "car": "car",
    "truck": "lorry",
    "bus": "bus",
    "motorcycle": "motorcycle",
    "bicycle": "bicycle",
}
#: UN/CEFACT Rec. 20 unit codes (normalized form only)
UNIT_CODES = {"pm25": "GQ", "pm10": "GQ", "averageVehicleSpeed": "KMH", "intensity": "E50"}


@dataclass(frozen=True)
class Unit:
    """Who observes: the unit's site and id, and where it stands (WGS84, may be unknown)."""

    site: str
    device: str
    latitude: float | None = None
    longitude: float | None = None

    @property
    def device_urn(self) -> str:
        return f"urn:ngsi-ld:Device:{_seg(self.site)}:{_seg(self.device)}"

    def location(self) -> dict[str, Any] | None:
        if self.latitude is None or self.longitude is None:
            return None
        return {"type": "Point", "coordinates": [round(self.longitude, 7), round(self.latitude, 7)]}


def _seg(s: str) -> str:
    """One URN segment: keep [A-Za-z0-9._-], everything else as %XX (stable, reversible)."""
    return re.sub(r"[^A-Za-z0-9._-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), s)


def _stamp(iso: str) -> str:
    """'2026-12-01T20:03:00.000Z' -> '20261201T200300Z' (for ids)."""
    return iso[:19].replace("-", "").replace(":", "") + "Z"


def _iso(ts: float) -> str:
    from agent.timefmt import iso_utc

    return iso_utc(ts)


def _parse(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def traffic_flow_entities(
    bins: Iterable[Mapping[str, Any]],
    *,
    unit: Unit,
    directions: Mapping[tuple[str, str], tuple[str, str]] | None = None,
    occupancy: Mapping[tuple[str, str, str], float] | None = None,
    speeds: Mapping[tuple[str, str], float] | None = None,
    privacy: Mapping[str, Any] | None = None,
    merged_class: str | None = None,
) -> list[dict[str, Any]]:
    """TrafficFlowObserved entities (key-values) from volume bins.

    Args:
        bins: rows ``{"camera", "line", "direction", "class", "start", "seconds", "count",
            "coverage"}`` (one per camera, line, direction, class and bin; ``coverage`` 0..1).
        unit: the observing unit (``refDevice`` and ``location``).
        directions: ``(camera, line) -> (forward name, backward name)``; a line's first direction is
            ``forward``, its second ``backward`` (from the line config). Unknown: no laneDirection.
        occupancy: ``(camera, line, bin start) -> fraction 0..1`` where a zone gives it.
        speeds: ``(camera, bin start) -> mean speed km/h`` of the tracks measured in the bin.
        privacy: the small-count declaration (``agent.privacy.smallcount``) of protected bins, sent
            as ``privacyProtection`` on every entity; None when no protection was applied.
        merged_class: the class of merged small bins: counted in the all-classes total only.

    Returns:
        One entity per camera/line/direction/bin/vehicle class and one for all classes (sorted by id).
    """
    directions = directions or {}
    occupancy = occupancy or {}
    speeds = speeds or {}
    out = []
    for (camera, line, direction, start, seconds), g in _group_bins(bins).items():
        base = _flow_base(unit, camera, line, direction, start, seconds, g["coverage"], privacy)
        fwd_back = directions.get((camera, line))
        if fwd_back and direction in fwd_back:
            base["laneDirection"] = "forward" if direction == fwd_back[0] else "backward"
        occ = occupancy.get((camera, line, start))
        if occ is not None:
            base["occupancy"] = round(min(1.0, max(0.0, occ)), 4)
        stem = (
            ":".join(_seg(x) for x in (unit.site, unit.device, camera, line, direction)) + ":" + _stamp(start)
        )
        out += _flow_per_class(base, stem, g["classes"], speeds.get((camera, start)), merged_class)
    return sorted(out, key=lambda e: e["id"])


def _group_bins(bins: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str, str, int], dict[str, Any]]:
    """The bins by camera, line, direction, start and length: counts per class, the lowest coverage."""
    groups: dict[tuple[str, str, str, str, int], dict[str, Any]] = {}
    for b in bins:
        key = (b["camera"], b["line"], b["direction"], b["start"], int(b["seconds"]))
        g = groups.setdefault(key, {"classes": {}, "coverage": float(b["coverage"])})
        g["classes"][b["class"]] = g["classes"].get(b["class"], 0) + int(b["count"])
        g["coverage"] = min(g["coverage"], float(b["coverage"]))
    return groups


def _flow_base(
    unit: Unit,
    camera: str,
    line: str,
    direction: str,
    start: str,
    seconds: int,
    coverage: float,
    privacy: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The attributes every entity of one camera/line/direction/bin shares."""
    t0 = _parse(start)
    base: dict[str, Any] = {
        "type": "TrafficFlowObserved",
        "dateObserved": f"{_iso(t0)}/{_iso(t0 + seconds)}",
        "dateObservedFrom": _iso(t0),
        "dateObservedTo": _iso(t0 + seconds),
        "refDevice": unit.device_urn,
        "name": f"{unit.device} {camera} {line} {direction}",
        "description": f"Vehicles crossing line {line} of camera {camera} ({direction}), counted on the unit",
        "dataProvider": unit.device_urn,
        "source": f"edge-agent:{unit.site}/{unit.device}",
        "reliability": round(coverage, 3),
    }
    if privacy:
        base["privacyProtection"] = dict(privacy)
    loc = unit.location()
    if loc:
        base["location"] = loc
    return base


def _flow_per_class(
    base: dict[str, Any],
    stem: str,
    classes: Mapping[str, int],
    speed: float | None,
    merged_class: str | None,
) -> list[dict[str, Any]]:
    """The all-classes entity (with the mean speed, and merged small bins), then one per vehicle class."""
    vehicles = {c: n for c, n in classes.items() if c in VEHICLE_TYPES}
    total = {
        **base,
        "id": f"urn:ngsi-ld:TrafficFlowObserved:{stem}:all",
        "intensity": sum(vehicles.values()) + (classes.get(merged_class, 0) if merged_class else 0),
    }
    if speed is not None:
        total["averageVehicleSpeed"] = round(speed, 1)
    out = [total]
    for cls, n in sorted(vehicles.items()):
        e = {
            **base,
            "id": f"urn:ngsi-ld:TrafficFlowObserved:{stem}:{_seg(cls)}",
            "intensity": n,
            "vehicleType": VEHICLE_TYPES[cls],
        }
        if cls != VEHICLE_TYPES[cls]:
            e["vehicleSubType"] = cls
        out.append(e)
    return out


def air_quality_entities(hours: Iterable[Mapping[str, Any]], *, unit: Unit) -> list[dict[str, Any]]:
    """AirQualityObserved entities (key-values), one per sensor per hour.

    Args:
        hours: rows ``{"sensor", "start" (UTC hour), "pm2_5", "pm10" (valid hourly means or None),
            "minutes" (minutes of the hour with a reading, per the best pollutant), "aqi" (the EPA
            result at the end of the hour, see :func:`firmware_bridge.summary.sensor_aqi`'s
            ``current``, or None), "location" (GeoJSON of the sensor or None)}``.
        unit: the observing unit (its location is used when the row has none).

    Returns:
        Entities sorted by id; an hour with too little data has no pm25/pm10 and no AQI, and says so
        in ``reliability`` (minutes / 60) and ``aqiBasis``.
    """
    out = []
    for h in hours:
        t0 = _parse(h["start"])
        t_end = h.get("end") or t0 + 3600
        loc = h.get("location") or unit.location()
        if loc is None:
            from agent.errors import ConfigError

            raise ConfigError(
                "AirQualityObserved needs a location and the unit has none",
                "set device.latitude and device.longitude in the config (or give the unit a GPS)",
            )
        e: dict[str, Any] = {
            "id": f"urn:ngsi-ld:AirQualityObserved:{_seg(unit.site)}:{_seg(unit.device)}:{_seg(h['sensor'])}:{_stamp(h['start'])}",
            "type": "AirQualityObserved",
            "dateObserved": _iso(t_end),
            "dateObservedFrom": _iso(t0),
            "dateObservedTo": _iso(t_end),
            "location": loc,
            "refDevice": f"{unit.device_urn}:{_seg(h['sensor'])}",
            "dataProvider": unit.device_urn,
            "source": f"edge-agent:{unit.site}/{unit.device}",
            "typeofLocation": "outdoor",
            "reliability": round(min(60, h.get("minutes") or 0) / 60, 3),
            "averagingBasis": "1h_mean",
        }
        if h.get("pm2_5") is not None:
            e["pm25"] = round(h["pm2_5"], 2)
        if h.get("pm10") is not None:
            e["pm10"] = round(h["pm10"], 2)
        a = h.get("aqi") or {}
        if a.get("aqi") is not None:
            e["airQualityIndex"] = int(a["aqi"])
            e["airQualityLevel"] = a["category"]
            e["aqiColor"] = a["color"]
            e["aqiTable"] = a.get("table")
        e["aqiBasis"] = a.get("basis", "nowcast") if a.get("aqi") is not None else "insufficient data"
        out.append(e)
    return sorted(out, key=lambda e: e["id"])


#: attributes that are Relationships / GeoProperties / DateTimes in the normalized form
_RELATIONSHIPS = {"refDevice", "refRoadSegment", "refPointOfInterest", "refWeatherObserved"}
_DATETIMES = {"dateObservedFrom", "dateObservedTo", "dateCreated", "dateModified"}


def normalized(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The normalized NGSI-LD form of a key-values entity (``unitCode`` where we know the unit)."""
    out: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    when = entity.get("dateObservedTo") or entity.get("dateObserved")
    for k, v in entity.items():
        if k in ("id", "type", "@context"):
            continue
        if k in _RELATIONSHIPS:
            out[k] = {"type": "Relationship", "object": v}
        elif k == "location":
            out[k] = {"type": "GeoProperty", "value": v}
        elif k in _DATETIMES:
            out[k] = {"type": "Property", "value": {"@type": "DateTime", "@value": v}}
        else:
            p: dict[str, Any] = {"type": "Property", "value": v}
            if k in UNIT_CODES:
                p["unitCode"] = UNIT_CODES[k]
            if k != "dateObserved" and isinstance(when, str) and "/" not in when:
                p["observedAt"] = when
            out[k] = p
    return out


def context_for(entity_type: str) -> str:
    return TRANSPORTATION_CONTEXT if entity_type == "TrafficFlowObserved" else ENVIRONMENT_CONTEXT
