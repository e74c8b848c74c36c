"""Privacy settings: blur modes, per-camera masks, small-count protection, and the report's limits.

``[privacy]`` is one section of the agent's config; a camera's static masks live with the camera
(``[[cameras.masks]]``) because their points are in that camera's pixels.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.configbase import Section, check_name


class PrivacyMask(Section):
    """A static privacy mask: a polygon of one camera's frame (a window, a garden, a doorway)."""

    name: str = Field(..., description="Mask name (shown in the privacy report).")
    points: list[list[float]] = Field(
        ...,
        description="Polygon corners, pixels or 0..1 of the frame (see units); at least 3.",
        examples=[[[0.0, 0.0], [0.3, 0.0], [0.3, 0.25], [0.0, 0.25]]],
    )
    units: Literal["auto", "px", "norm"] = Field("auto", description="px, norm (0..1 of the frame) or auto.")
    mode: Literal["black", "blur"] = Field(
        "black",
        description="black: the area becomes black; blur: coarse pixelation then blur (shape and "
        "colour of the area remain, no detail). Both are applied to the frame before inference, "
        "snapshots, stored images and the status page see it.",
    )
    drop_overlap: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A detection whose box lies inside the mask by more than this fraction is dropped "
        "(and counted); 1 keeps every detection.",
    )

    _name = field_validator("name")(lambda v: check_name(v, "mask name"))

    @field_validator("points")
    @classmethod
    def _polygon(cls, v: list[list[float]]) -> list[list[float]]:
        if len(v) < 3 or any(len(p) != 2 for p in v):
            raise ValueError("a mask needs at least 3 points, each [x, y]")
        return v


class SmallCountConfig(Section):
    """Protection of small counts in what leaves the unit (summaries). The local database keeps the
    true counts."""

    mode: Literal["suppress", "merge", "dp", "off"] = Field(
        "merge",
        description="suppress: a bin of a protected class with a count below its k is left out; merge: "
        "such bins of one line/direction are added into one bin of class merge_class, published when "
        "that sum reaches the smallest k involved (else left out); dp: Laplace noise of scale 1/epsilon "
        "on every bin of a protected class (differential privacy, no suppression); off: true counts.",
    )
    k: dict[str, int] = Field(
        default_factory=lambda: {"person": 3, "bicycle": 3},
        description="Protected classes and their threshold k (counts below k are not published). "
        "Classes not listed (vehicles) are published as counted.",
    )
    merge_class: str = Field("other_protected", description="Class name of merged small bins.")
    epsilon: float = Field(
        1.0,
        gt=0,
        le=100,
        description="dp mode: privacy budget per bin and window (one crossing changes one bin by 1, so "
        "the noise is Laplace with scale 1/epsilon; smaller is more private and noisier).",
    )

    @field_validator("k")
    @classmethod
    def _ks(cls, v: dict[str, int]) -> dict[str, int]:
        for name, k in v.items():
            if k < 0:
                raise ValueError(f"k for {name!r} must be >= 0 (0 or 1: not protected)")
        return v


class PrivacyLimits(Section):
    """What `edge-agent privacy report` (and doctor) treats as a failure."""

    images: Literal["allowed", "blurred-only", "forbidden"] = Field(
        "blurred-only",
        description="Camera images the unit may serve: allowed (any), blurred-only (fails when a camera "
        "image can be served with privacy.blur = off), forbidden (fails when any can be served).",
    )
    max_raw_age_h: float | None = Field(
        None,
        gt=0,
        description="Fails when the oldest raw row held (detections, tracks, crossings, sensor "
        "readings, images) is older than this many hours. None: no limit.",
        examples=[72],
    )


class PrivacyConfig(Section):
    blur: Literal["people", "faces", "off"] = Field(
        "people",
        description="What is blurred in every image the unit produces (snapshots, the status page, "
        "`detect --out`): people (every box of blur_labels), faces (faces found by the on-device face "
        "detector on each person, the head of the box where none is found), or off.",
    )
    snapshots: bool = Field(
        True,
        description="Serve camera snapshots at all (/api/snapshot). Images never leave the unit "
        "any other way.",
    )
    blur_labels: list[str] = Field(
        default_factory=lambda: ["person"], description="Detector labels treated as people."
    )
    face_model: str = Field(
        "face_detection_short_range",
        description="Face detector for blur = faces: a catalog name or a .tflite path (BlazeFace family).",
    )
    face_threshold: float = Field(0.5, gt=0, le=1, description="Minimum face score.")
    small_counts: SmallCountConfig = Field(
        default_factory=SmallCountConfig, description="Small-count protection of published counts."
    )
    limits: PrivacyLimits = Field(
        default_factory=PrivacyLimits, description="Limits checked by the privacy report."
    )

    @model_validator(mode="after")
    def _merge_name(self) -> PrivacyConfig:
        if self.small_counts.merge_class in self.small_counts.k:
            raise ValueError("small_counts.merge_class must not be a protected class name")
        return self
