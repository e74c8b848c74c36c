"""Per-camera analytics config: tracker, counting lines, zones, ground-plane calibration, bins, forecast.

Points are ``[x, y]`` pairs, in pixels of the source frame or normalized to ``0..1`` of the frame
(``units``; ``auto`` means normalized when every coordinate is within 0..1). Classes are label
names of the detector's label space (COCO for the default model: car, truck, bus, motorcycle,
bicycle, person).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.analytics.incidents.config import IncidentRule, RadarFusionConfig, WrongWayRule
from agent.configbase import NAME_PATTERN, Section

Point = tuple[float, float]
Anchor = Literal["bottom_center", "center"]
Units = Literal["auto", "px", "norm"]

# COCO's road users, and the traffic_lstm_vehicles model's own vehicle labels (sedan, pickup_suv_van,
# large_veh_bus), so a line counts what either catalog detector calls a vehicle without a setting
DEFAULT_CLASSES = [
    "car",
    "truck",
    "bus",
    "motorcycle",
    "bicycle",
    "person",
    "sedan",
    "pickup_suv_van",
    "large_veh_bus",
]


# Used for a model the catalog has no calibration for (a model given by path). Chosen to be safe
# rather than best: low enough that a detector with modest scores (TF2 FPNLite exports give most
# vehicles 0.3-0.5) still starts tracks, high enough that the clutter below it does not.
SAFE_CALIBRATION = {
    "high_threshold": 0.35,
    "low_threshold": 0.2,
    "new_track_threshold": 0.4,
    "max_overlap": 0.6,
}
CALIBRATED = tuple(SAFE_CALIBRATION)


class TrackerConfig(Section):
    high_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Detections at or above this score are matched first and may start tracks (ByteTrack's high pass). Default: the model's calibration in the catalog, else 0.35.",
        examples=[0.35],
    )
    low_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Detections between this and high_threshold only extend existing tracks (ByteTrack's low pass). The detector hands the tracker everything down to this score, whatever the camera's threshold (which only decides what is stored and shown). Default: the model's calibration, else 0.2.",
        examples=[0.2],
    )
    new_track_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Least score of an unmatched detection that starts a new track. Default: the model's calibration, else 0.4.",
        examples=[0.4],
    )
    match_iou: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Least overlap (IoU) between a track's predicted box and a high-score detection to match them.",
    )
    low_match_iou: float = Field(0.5, ge=0, le=1, description="Least overlap for the low-score pass.")
    max_center_dist: float = Field(
        1.0,
        ge=0,
        description="Fallback match for fast objects at low frame rates: centre distance at most this many box diagonals (0: off).",
    )
    max_overlap: float | None = Field(
        None,
        gt=0,
        le=1,
        description="A detection whose box lies this much (intersection over the smaller box) inside a higher-scoring one is a duplicate: it neither matches nor starts a track (1: off). Default: the model's calibration, else 0.6.",
        examples=[0.6],
    )
    lost_timeout_s: float = Field(
        1.5,
        gt=0,
        description="A track unseen this long is closed (it survives occlusions shorter than this).",
    )
    predict_s: float = Field(
        0.5,
        ge=0,
        description="Across a gap in detections up to this long, a track's predicted positions (its motion model) count toward line crossings; such a crossing counts once the track is seen again beyond the band on the new side, and never when it is seen back or not seen again (0: off).",
    )
    relink_dist: float = Field(
        2.0,
        ge=0,
        description="A new track confirmed within this many box diagonals of where a lost track is predicted to be (similar size, moving on) continues the lost track instead of counting as a new object (0: off).",
    )
    check_motion: bool = Field(
        True,
        description="Count a crossing only when the track's own motion (its box centre's velocity) goes that way: a box that grows or shrinks at a line moves its bottom edge without the object crossing.",
    )
    min_hits: int = Field(
        2,
        ge=1,
        description="Detections a new track needs before it is confirmed (counted and given to the pipeline).",
    )
    class_agnostic: bool = Field(
        True,
        description="Match detections to tracks whatever their labels (a truck seen as a bus keeps its track); the class is the track's majority vote.",
    )

    def resolved(self, calibration: dict[str, float] | None = None) -> TrackerConfig:
        """A copy with every unset score setting taken from ``calibration`` (the model's catalog
        entry), else from :data:`SAFE_CALIBRATION`. Settings given in the config always win."""
        fill = {}
        for k in CALIBRATED:
            if getattr(self, k) is None:
                fill[k] = float((calibration or {}).get(k, SAFE_CALIBRATION[k]))
        out = self.model_copy(update=fill)
        low, high = out.low_threshold, out.high_threshold
        assert low is not None and high is not None  # every CALIBRATED setting was filled above
        if low > high:
            out = out.model_copy(update={"low_threshold": high})
        return out


class LineConfig(Section):
    name: str = Field(..., pattern=NAME_PATTERN, description="Line name (a key in counts and summaries).")
    points: list[Point] = Field(
        ...,
        min_length=2,
        max_length=2,
        description="The two ends [[x1, y1], [x2, y2]]. The first direction is crossing towards the right-hand side of the line walked from its first point to its second (for a line drawn left to right: moving down the image).",
    )
    units: Units = Field("auto", description="px, norm (0..1 of the frame) or auto.")
    directions: tuple[str, str] = Field(
        ("forward", "backward"),
        description="Names of the two crossing directions (first: towards the right-hand side, see points).",
    )
    classes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CLASSES), description="Labels counted by this line."
    )
    anchor: Anchor = Field(
        "bottom_center",
        description="Point of the box that crosses: bottom_center (where the object meets the ground) or center.",
    )
    hysteresis_px: float = Field(
        6.0,
        ge=0,
        description="A side of the line is only taken once the anchor is this far from it (pixels)...",
    )
    hysteresis_rel: float = Field(
        0.1,
        ge=0,
        le=1,
        description="... or this fraction of the box height, whichever is larger. Jitter inside this band never counts.",
    )

    @field_validator("directions")
    @classmethod
    def _dirs(cls, v: tuple[str, str]) -> tuple[str, str]:
        if v[0] == v[1]:
            raise ValueError("the two direction names must differ")
        return v


class ZoneConfig(Section):
    name: str = Field(..., pattern=NAME_PATTERN, description="Zone name.")
    points: list[Point] = Field(
        ..., min_length=3, description="Polygon corners [[x, y], ...] (at least three)."
    )
    units: Units = Field("auto", description="px, norm (0..1 of the frame) or auto.")
    classes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CLASSES), description="Labels that occupy the zone."
    )
    anchor: Anchor = Field("bottom_center", description="Point of the box tested against the polygon.")
    speed: bool = Field(
        True, description="Measure each track's speed between its entry and exit (needs calibration)."
    )


class SpeedSegment(Section):
    name: str = Field(..., pattern=NAME_PATTERN, description="Segment name.")
    line_a: str = Field(..., description="Line crossed first (either direction).")
    line_b: str = Field(..., description="Line crossed second.")
    distance_m: float | None = Field(
        None,
        gt=0,
        description="Distance between the lines along the road; default: measured through the calibration at the crossing points.",
        examples=[20.0],
    )


class CalibrationConfig(Section):
    image_points: list[Point] = Field(
        ...,
        min_length=4,
        max_length=4,
        description="Four image points (pixels or normalized, see units) on the road surface, no three in a line.",
    )
    world_points: list[Point] = Field(
        ...,
        min_length=4,
        max_length=4,
        description="The same four points on the ground, in metres (any flat x/y frame, e.g. across/along the road).",
    )
    units: Units = Field("auto", description="Units of image_points.")


class ForecastConfig(Section):
    enabled: bool = Field(
        True, description="Forecast the next 15, 30 and 60 minutes of each line and direction."
    )
    history_days: int = Field(
        35, ge=1, le=120, description="History kept in memory (and loaded at start) for the forecast."
    )
    backtest_days: float = Field(
        7.0, gt=0, description="Window of the rolling backtest error (MAE, MAPE) reported with each forecast."
    )


class CameraAnalytics(Section):
    enabled: bool = Field(
        True, description="Track objects on this camera and run its lines, zones, speeds, bins and forecasts."
    )
    tracker: TrackerConfig = Field(
        default_factory=TrackerConfig, description="Multi-object tracker (ByteTrack-style)."
    )
    lines: list[LineConfig] = Field(
        default_factory=list,
        description="Counting lines.",
        examples=[
            [
                {
                    "name": "main",
                    "points": [[0.0, 0.62], [1.0, 0.62]],
                    "directions": ["inbound", "outbound"],
                    "classes": ["car", "truck", "bus", "motorcycle"],
                }
            ]
        ],
    )
    zones: list[ZoneConfig] = Field(default_factory=list, description="Occupancy / dwell zones (polygons).")
    speed_segments: list[SpeedSegment] = Field(
        default_factory=list, description="Speed between two counting lines."
    )
    calibration: CalibrationConfig | None = Field(
        None,
        description="Ground-plane calibration for speeds (four image points and their positions in metres).",
    )
    bin_minutes: int = Field(
        15,
        ge=1,
        le=1440,
        description="Length of the volume bins in minutes (aligned to UTC midnight; 1440 must be a multiple).",
    )
    forecast: ForecastConfig = Field(default_factory=ForecastConfig, description="Short-term flow forecast.")
    incidents: list[IncidentRule] = Field(
        default_factory=list,
        description="Road-safety incident rules on this camera's zones (wrong_way, stopped_vehicle, pedestrian_on_carriageway, queue); events are published at once (docs/incidents.md).",
        examples=[
            [
                {
                    "kind": "wrong_way",
                    "name": "wrong_way_nb",
                    "zone": "northbound",
                    "line": "main",
                    "line_direction": "inbound",
                },
                {
                    "kind": "stopped_vehicle",
                    "name": "shoulder_stop",
                    "zone": "shoulder",
                    "min_duration_s": 30,
                },
            ]
        ],
    )
    radar: RadarFusionConfig | None = Field(
        None,
        description="An OPS243 radar on this camera's lane: its speeds are attached to the tracks crossing `line`.",
    )

    @field_validator("bin_minutes")
    @classmethod
    def _bin(cls, v: int) -> int:
        if 1440 % v:
            raise ValueError("bin_minutes must divide a day (1440 minutes): 5, 10, 15, 30, 60, ...")
        return v

    @model_validator(mode="after")
    def _refs(self) -> CameraAnalytics:
        names = [ln.name for ln in self.lines]
        if len(set(names)) != len(names):
            raise ValueError("duplicate line name")
        if len({z.name for z in self.zones}) != len(self.zones):
            raise ValueError("duplicate zone name")
        for seg in self.speed_segments:
            for ref in (seg.line_a, seg.line_b):
                if ref not in names:
                    raise ValueError(f"speed segment {seg.name}: no line named {ref!r}")
        zones = {z.name for z in self.zones}
        lines = {ln.name: ln for ln in self.lines}
        rule_names = [r.name for r in self.incidents]
        if len(set(rule_names)) != len(rule_names):
            raise ValueError("duplicate incident rule name")
        for r in self.incidents:
            if r.zone not in zones:
                raise ValueError(
                    f"incident rule {r.name}: no zone named {r.zone!r} (add it to analytics.zones)"
                )
            if isinstance(r, WrongWayRule) and r.line is not None:
                if r.line not in lines:
                    raise ValueError(f"incident rule {r.name}: no line named {r.line!r}")
                if r.line_direction not in lines[r.line].directions:
                    raise ValueError(
                        f"incident rule {r.name}: line_direction {r.line_direction!r} is not one of {list(lines[r.line].directions)}"
                    )
        if self.radar is not None:
            if self.radar.line not in lines:
                raise ValueError(f"radar: no line named {self.radar.line!r}")
            if self.radar.inbound_direction not in lines[self.radar.line].directions:
                raise ValueError(
                    f"radar: inbound_direction {self.radar.inbound_direction!r} is not one of {list(lines[self.radar.line].directions)}"
                )
        return self
