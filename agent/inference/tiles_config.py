"""The camera's ``tiles`` setting (see :mod:`agent.inference.tiles`), kept free of heavy imports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

Region = tuple[float, float, float, float]
TilesSetting = Literal["auto", "off"] | list[Region]

TILES_FIELD: Any = Field(
    "off",
    description='Detection tiles (experimental, off by default), for objects too small for the model in the full frame (far counting lines): "auto" surveys the first frames and adds a row of model-sized tiles along each line whose objects are small (none otherwise); "off"; or a list of [x1, y1, x2, y2] regions (pixels, or 0..1 of the frame). Each tile costs one more model run per frame (docs/validation.md).',
    examples=["auto"],
)
