"""Points in config (pixels or normalized) -> pixels of the frame."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_pixels(
    points: Sequence[Sequence[float]], units: str, frame_size: tuple[int, int] | None, what: str
) -> np.ndarray:
    """``points`` as an (N, 2) float array in pixels. ``frame_size`` is (width, height).

    ``units='auto'`` takes the points as normalized when every coordinate lies within 0..1.
    Raises ValueError when normalized points need a frame size that is not known yet.
    """
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    norm = units == "norm" or (units == "auto" and bool(np.all((arr >= 0) & (arr <= 1))))
    if not norm:
        return arr
    if frame_size is None:
        raise ValueError(f"{what}: normalized points need the frame size")
    w, h = frame_size
    return arr * np.array([w, h], dtype=float)
