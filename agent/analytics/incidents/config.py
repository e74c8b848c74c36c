"""Config of the incident rules of one camera, and of its radar fusion.

A rule watches one zone of the camera's ``analytics.zones`` (a lane, a hard shoulder, a junction
box). Its ``kind`` picks the rule; the models are joined in a union discriminated on ``kind``, so
a rule only accepts the keys it understands. Speeds are in km/h where the camera has a ground-plane
calibration, else in box heights per second (``*_rel``: a car about 1.5 m tall, so 1 box height per
second is roughly 5 km/h at any distance from the camera).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from agent.configbase import NAME_PATTERN, Section

VEHICLES = ["car", "truck", "bus", "motorcycle"]


class _Rule(Section):
    name: str = Field(..., pattern=NAME_PATTERN, description="Rule name (the `rule` of its events).")
    zone: str = Field(
        ..., description="Name of the zone (in this camera's analytics.zones) the rule watches."
    )
    enabled: bool = Field(True, description="A disabled rule raises nothing.")
    snapshot: bool = Field(
        False,
        description="Keep a privacy-blurred JPEG of the frame at the start of each event, on the unit only (listed by the API; never published).",
    )
    update_s: float = Field(
        60.0, gt=0, description="While an event lasts, an `update` is published this often."
    )


class WrongWayRule(_Rule):
    kind: Literal["wrong_way"] = Field(description="A track moving against the lane's direction.")
    direction: tuple[float, float] | None = Field(
        None,
        description="Expected direction of travel in the image, as a vector [dx, dy] (y grows down the image: [0, 1] is 'towards the bottom').",
        examples=[[0.0, 1.0]],
    )
    line: str | None = Field(
        None, description="Or: the expected direction is crossing this counting line in `line_direction`."
    )
    line_direction: str | None = Field(None, description="The direction name of `line` that is expected.")
    classes: list[str] = Field(default_factory=lambda: list(VEHICLES), description="Labels the rule watches.")
    min_distance_m: float = Field(
        8.0,
        gt=0,
        description="With calibration: metres travelled against the direction before it is an event.",
    )
    min_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Without calibration: fraction of the zone's extent along the direction travelled against it.",
    )
    min_speed_kmh: float = Field(5.0, ge=0, description="With calibration: least speed (km/h).")
    min_speed_rel: float = Field(
        0.5, ge=0, description="Without calibration: least speed in box heights per second."
    )
    min_steady: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Share of the track's steps since its furthest point along the lane that must move against it (a track hopping back onto the vehicle behind is not a wrong-way driver).",
    )
    max_angle_deg: float = Field(
        60.0,
        gt=0,
        le=90,
        description="The motion counts as against the lane when it is within this angle of the reverse direction.",
    )

    @model_validator(mode="after")
    def _dir(self) -> WrongWayRule:
        if (self.direction is None) == (self.line is None):
            raise ValueError("wrong_way: give either direction = [dx, dy] or line (and line_direction)")
        if self.line is not None and self.line_direction is None:
            raise ValueError("wrong_way: line needs line_direction (one of that line's directions)")
        if self.direction is not None and self.direction[0] == 0 and self.direction[1] == 0:
            raise ValueError("wrong_way: direction must not be [0, 0]")
        return self


class StoppedVehicleRule(_Rule):
    kind: Literal["stopped_vehicle"] = Field(description="A vehicle standing still in the zone.")
    classes: list[str] = Field(default_factory=lambda: list(VEHICLES), description="Labels the rule watches.")
    min_duration_s: float = Field(30.0, gt=0, description="Standing still this long raises the event.")
    max_speed_kmh: float = Field(3.0, ge=0, description="With calibration: at or below this it stands still.")
    max_speed_rel: float = Field(
        0.1,
        ge=0,
        description="Without calibration: box heights per second at or below which it stands still.",
    )
    occlusion_s: float = Field(
        5.0,
        ge=0,
        description="A vehicle hidden (or its track lost) for up to this long and seen again at the same place is the same stop.",
    )
    clear_s: float = Field(
        1.0, ge=0, description="The event ends after the vehicle has moved for this long (or left the zone)."
    )


class PedestrianRule(_Rule):
    kind: Literal["pedestrian_on_carriageway"] = Field(description="A person where people do not belong.")
    classes: list[str] = Field(default_factory=lambda: ["person"], description="Labels the rule watches.")
    min_duration_s: float = Field(3.0, ge=0, description="In the zone this long raises the event.")
    occlusion_s: float = Field(2.0, ge=0, description="Gaps up to this long do not end the stay.")


class QueueRule(_Rule):
    kind: Literal["queue"] = Field(description="Slow, dense traffic in the zone.")
    classes: list[str] = Field(default_factory=lambda: list(VEHICLES), description="Labels the rule watches.")
    min_vehicles: int = Field(4, ge=1, description="At least this many vehicles in the zone...")
    max_speed_kmh: float = Field(
        10.0, ge=0, description="... with a median speed at or below this (calibrated) ..."
    )
    max_speed_rel: float = Field(
        0.6, ge=0, description="... or this many box heights per second (uncalibrated) ..."
    )
    min_duration_s: float = Field(30.0, gt=0, description="... for this long raises the event.")
    clear_s: float = Field(
        15.0, ge=0, description="The queue has dissolved once the condition is false this long."
    )
    cooldown_s: float = Field(
        60.0, ge=0, description="After a queue ends, a new one is not raised for this long."
    )


IncidentRule = Annotated[
    WrongWayRule | StoppedVehicleRule | PedestrianRule | QueueRule, Field(discriminator="kind")
]


class RadarFusionConfig(Section):
    sensor: str = Field(
        ..., description="Name of the OPS243 sensor (in [[sensors]]) that looks at this camera's lane."
    )
    line: str = Field(
        ..., description="The counting line under the radar's beam: its crossings take the radar speed."
    )
    inbound_direction: str = Field(
        ...,
        description="The direction name of `line` that the radar reports as inbound (towards the radar).",
    )
    tolerance_s: float = Field(
        0.6, gt=0, le=5, description="A reading belongs to a crossing at most this far apart in time."
    )
