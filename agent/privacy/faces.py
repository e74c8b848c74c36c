"""Finding faces to blur: the BlazeFace detector on the frame and on each person's head region.

A roadside camera sees people small: a face may be 10-20 pixels wide in a 720p frame, far below what a
128×128 detector finds on the whole frame. So the detector also runs on a square crop around the
top of every person box, scaled up to the model's input, where the same face fills a quarter of
the input. The whole frame is searched too, for faces the person detector did not box. Where no
face is found in a person box (the person faces away, is too small, or the detector misses), the
caller blurs the head region of the box instead: ``faces`` mode never shows a face because the
face detector missed it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import AgentError

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

# A standing person's head is in the top ~1/7 of the box; the crop is a square as wide as the
# box (at least HEAD_CROP of its height), starting a little above the box.
HEAD_CROP = 0.45
HEAD_REGION = 0.3  # top fraction of a person box blurred when no face is found in it


def head_crop(box: Box, frame_w: int, frame_h: int) -> tuple[int, int, int, int] | None:
    """The square search region around the top of a person box, clipped to the frame (pixels)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if w < 2 or h < 2:
        return None
    side = min(max(w, HEAD_CROP * h), max(w, h))
    cx = (x1 + x2) / 2
    top = y1 - 0.08 * side
    c = (
        int(max(0, cx - side / 2)),
        int(max(0, top)),
        int(min(frame_w, cx + side / 2)),
        int(min(frame_h, top + side)),
    )
    if c[2] - c[0] < 4 or c[3] - c[1] < 4:
        return None
    return c


def head_region(box: Box) -> Box:
    """The part of a person box blurred when no face was found in it."""
    x1, y1, x2, y2 = box
    return (x1, y1, x2, y1 + max(HEAD_REGION * (y2 - y1), min(x2 - x1, y2 - y1) * 0.5))


def _inside(face: Box, person: Box) -> bool:
    """A face belongs to a person box when its centre lies in the box's upper half."""
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    x1, y1, x2, y2 = person
    return x1 <= cx <= x2 and y1 <= cy <= y1 + 0.6 * (y2 - y1)


@dataclass
class FaceSearch:
    """What :meth:`FaceFinder.search` found in one frame."""

    faces: list[tuple[Box, float]]  # (box in frame pixels, score)
    heads: list[Box]  # head regions of person boxes with no face found
    crops: int  # detector runs on person crops
    ms: float  # time spent


class FaceFinder:
    """BlazeFace on a frame and on person crops. Thread-safe (one interpreter, used under a lock).

    The model is loaded on first use; when it cannot be loaded (not installed and no mirror or
    network), ``why_not`` says why and :meth:`search` returns ``None``, so the caller blurs whole
    people instead.

    Args:
        model: catalog name or ``.tflite`` path of a BlazeFace model.
        models_cfg: a ``ModelsConfig`` (install dir, mirror, catalog).
        inference_cfg: an ``InferenceConfig`` (runtime, threads); the face model always runs on the CPU
            (it is float32: no Edge TPU build exists).
        threshold: minimum face score.
    """

    def __init__(self, model: str, models_cfg: Any, inference_cfg: Any, threshold: float = 0.5) -> None:
        self.model = model
        self.models_cfg = models_cfg
        self.inference_cfg = inference_cfg
        self.threshold = threshold
        self.engine: Any = None
        self.why_not: str | None = None
        self._lock = threading.Lock()
        self._tried = False

    @classmethod
    def from_config(cls, cfg: Any) -> FaceFinder:
        """From an ``AgentConfig`` (its privacy, models and inference sections)."""
        return cls(cfg.privacy.face_model, cfg.models, cfg.inference, cfg.privacy.face_threshold)

    def load(self) -> bool:
        """Load the detector once; False (with ``why_not``) when it cannot be."""
        with self._lock:
            if self._tried:
                return self.engine is not None
            self._tried = True
            from agent.inference import load_engine

            icfg = self.inference_cfg.model_copy(
                update={"accelerator": "cpu", "resize": "letterbox", "family": "auto", "labels_keep": []}
            )
            try:
                eng = load_engine(self.model, icfg, self.models_cfg)
            except AgentError as exc:
                self.why_not = f"face model {self.model} unavailable: {exc.message}"
                log.error("%s; faces mode blurs whole people instead", self.why_not)
                return False
            if eng.family != "blazeface":
                self.why_not = f"face model {self.model} is a {eng.family} model, not BlazeFace"
                log.error("%s; faces mode blurs whole people instead", self.why_not)
                return False
            self.engine = eng
            return True

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Faces in ``image`` (any size; fitted to the model's input, letterboxed)."""
        if not self.load():
            return []
        with self._lock:
            dets = self.engine.run(image, threshold=self.threshold)[0]
        return [(tuple(d.box), float(d.score)) for d in dets]

    def search(self, image: np.ndarray, people: Sequence[Box]) -> FaceSearch | None:
        """Faces in a frame: on the whole frame and on the head region of every person box.

        Args:
            image: BGR frame.
            people: person boxes in frame pixels.

        Returns:
            :class:`FaceSearch`, or ``None`` when the detector is unavailable (see ``why_not``).
        """
        import time

        if not self.load():
            return None
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        faces = self.detect(image)
        heads: list[Box] = []
        crops = 0
        for person in people:
            found = [f for f in faces if _inside(f[0], person)]
            c = head_crop(person, w, h)
            if c is not None and not found:
                crops += 1
                for (fx1, fy1, fx2, fy2), score in self.detect(image[c[1] : c[3], c[0] : c[2]]):
                    face = (fx1 + c[0], fy1 + c[1], fx2 + c[0], fy2 + c[1])
                    faces.append((face, score))
                    if _inside(face, person):
                        found.append((face, score))
            if not found:
                heads.append(head_region(person))
        return FaceSearch(faces, heads, crops, (time.perf_counter() - t0) * 1000)


_finders: dict[tuple, FaceFinder] = {}
_finders_lock = threading.Lock()


def shared_finder(cfg: Any) -> FaceFinder:
    """One :class:`FaceFinder` per (model, models config, threshold): interpreters are costly."""
    key = (cfg.privacy.face_model, repr(cfg.models), cfg.inference.runtime, cfg.privacy.face_threshold)
    with _finders_lock:
        f = _finders.get(key)
        if f is None:
            f = _finders[key] = FaceFinder.from_config(cfg)
        return f
