"""Blurring people or faces in an image the unit produces (snapshots, the status page, `detect --out`).

Every producer of an image calls :func:`apply_privacy` on its own copy of the frame, after the
camera's static masks (:mod:`agent.privacy.masks`, applied in the pipeline) and before drawing or
encoding, so no box, label or scaling reveals what is under the blur.

Modes (``privacy.blur``):

- ``people``: every box whose label is in ``privacy.blur_labels`` is pixelated and blurred;
- ``faces``: faces found by the on-device BlazeFace detector (:mod:`agent.privacy.faces`) on the frame
  and on each person's head region are blurred; a person box in which no face is found has its
  head region blurred instead. When the face model cannot be loaded, whole people are blurred and
  the returned text says why;
- ``off``: nothing.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

FACE_PAD = 0.25  # a face box is widened by this much of its size (hair, ears, chin)


def blur_region(img: np.ndarray, box: tuple[float, float, float, float], pad: float = 0.08) -> None:
    """Pixelate then blur ``box`` (x1, y1, x2, y2) of ``img`` in place, padded by ``pad`` of its size."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    px, py = (x2 - x1) * pad, (y2 - y1) * pad
    x1, y1 = max(0, int(x1 - px)), max(0, int(y1 - py))
    x2, y2 = min(w, int(np.ceil(x2 + px))), min(h, int(np.ceil(y2 + py)))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    roi = img[y1:y2, x1:x2]
    small = cv2.resize(roi, (max(1, (x2 - x1) // 16), max(1, (y2 - y1) // 16)), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    k = max(3, ((min(x2 - x1, y2 - y1) // 8) | 1))
    img[y1:y2, x1:x2] = cv2.GaussianBlur(coarse, (k, k), 0)


def apply_privacy(
    img: np.ndarray, detections: list[Any], mode: str, labels: list[str], faces: Any = None
) -> str:
    """Blur ``img`` in place as ``mode`` says.

    Args:
        img: BGR image (a copy: it is changed).
        detections: the frame's detections (``.label``, ``.box`` in ``img`` pixels).
        mode: ``people``, ``faces`` or ``off``.
        labels: labels treated as people.
        faces: a :class:`~agent.privacy.faces.FaceFinder` (``faces`` mode; ``None``: people are blurred).

    Returns:
        What was done, for the ``X-Privacy`` header and logs, e.g. ``faces blurred: 2, heads blurred: 1``.
    """
    if mode == "off":
        return "off"
    people = [tuple(d.box) for d in detections if d.label in labels]
    if mode == "faces":
        found = faces.search(img, people) if faces is not None else None
        if found is not None:
            for box, _ in found.faces:
                blur_region(img, box, pad=FACE_PAD)
            for box in found.heads:
                blur_region(img, box, pad=0.1)
            return f"faces blurred: {len(found.faces)}, heads blurred: {len(found.heads)}"
        why = getattr(faces, "why_not", None) or "no face detector configured"
        for b in people:
            blur_region(img, b)
        return f"people blurred: {len(people)} (no face detector: {why})"
    for b in people:
        blur_region(img, b)
    return f"people blurred: {len(people)}"
