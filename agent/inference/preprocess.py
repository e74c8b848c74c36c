"""Fitting a BGR frame to a model's image input, and mapping boxes back to frame pixels.

BGR -> RGB, resize with ``cv2.INTER_LINEAR`` (stretch by default, letterbox optional), then the
model's normalization and quantization folded into one 256-entry lookup table, written straight
into the interpreter's input tensor. The buffers are reused from frame to frame. A camera's own
thread can do the same work ahead (``prepare``), so the inference thread only copies the result in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from agent.inference.tensors import quant_params


@dataclass(slots=True)
class Transform:
    """How model-input coordinates map back to the source frame.

    ``x_src = (x_norm * in_w - pad_x) / scale_x`` (same for y); stretch has no padding.
    """

    src_w: int
    src_h: int
    in_w: int
    in_h: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``[N, 4]`` normalized ``(x1, y1, x2, y2)`` input boxes to clipped source pixels.

        Args:
            boxes: float array, coordinates in [0, 1] of the model input.

        Returns:
            float32 ``[N, 4]`` boxes in source pixels, clipped to the frame.
        """
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] * self.in_w - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] * self.in_h - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.src_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_h, out=out[:, 1::2])
        return out

    def points_to_source(self, points: np.ndarray) -> np.ndarray:
        """Map ``[N, 2]`` normalized ``(x, y)`` input points (keypoints, polygon vertices) to clipped
        source pixels, as :meth:`to_source` does for boxes."""
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        return self.to_source(np.concatenate([pts, pts], axis=1))[:, :2]


class Prepared(NamedTuple):
    """A frame already fitted to a model's input (:meth:`Preprocessor.prepare`)."""

    key: tuple
    data: np.ndarray
    transform: Transform


def input_lut(detail: dict, mean: float, std: float) -> np.ndarray | None:
    """A 256-entry table pixel -> input value, or ``None`` when raw pixels are already right.

    The model expects ``real = (pixel - mean) / std``; a quantized input stores
    ``q = real / scale + zero_point``. For the usual uint8 models (scale 1/128, zero point 128,
    trained on [-1, 1]) that is the identity, so raw pixels are copied (as pycoral does).

    Args:
        detail: the input tensor's details.
        mean: pixel value that maps to 0.
        std: pixel range that maps to 1.

    Returns:
        ``None`` (copy raw pixels) or a lookup table of the input's dtype.
    """
    dtype = np.dtype(detail["dtype"])
    real = (np.arange(256, dtype=np.float64) - mean) / std
    if dtype.kind == "f":
        return real.astype(dtype)
    scale, zp = quant_params(detail)
    if scale == 0.0:  # an integer input without quantization: raw pixels
        return None if dtype == np.uint8 else np.arange(256).astype(dtype)
    if dtype == np.uint8 and abs(scale * std - 1.0) < 0.01 and abs(zp - mean) <= 1.0:
        return None
    info = np.iinfo(dtype)
    return np.clip(np.round(real / scale + zp), info.min, info.max).astype(dtype)


class Preprocessor:
    """Writes frames into an interpreter's image input, reusing its buffers.

    Args:
        interpreter: an allocated interpreter.
        input_index: position of the image among the inputs.
        mean, std: the model's normalization (``(pixel - mean) / std``).
        resize: ``"stretch"`` (default) or ``"letterbox"``.
        pad_value: letterbox border value (pixel units).
    """

    def __init__(
        self,
        interpreter: Any,
        input_index: int = 0,
        *,
        mean: float = 127.5,
        std: float = 127.5,
        resize: str = "stretch",
        pad_value: int = 114,
    ) -> None:
        self.interpreter = interpreter
        self.detail = interpreter.get_input_details()[input_index]
        _, self.h, self.w, self.c = (int(x) for x in self.detail["shape"])
        if self.c != 3:
            from agent.errors import ModelError

            raise ModelError(
                f"the model's image input has {self.c} channels, not 3 (RGB)", "use an RGB image model"
            )
        if resize not in ("stretch", "letterbox"):
            from agent.errors import ModelError

            raise ModelError(f"unknown resize mode {resize!r}", "use stretch or letterbox")
        self.resize = resize
        self.pad_value = pad_value
        self.lut = input_lut(self.detail, mean, std)
        self._rgb = np.empty((self.h, self.w, 3), np.uint8)
        self._resized = np.empty((self.h, self.w, 3), np.uint8)

    def rgb(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Transform]:
        """The model-sized RGB uint8 image (a reused buffer) and its transform."""
        import cv2

        if (
            image_bgr is None
            or image_bgr.ndim != 3
            or image_bgr.shape[2] not in (3, 4)
            or image_bgr.size == 0
        ):
            from agent.errors import ModelError

            shape = None if image_bgr is None else image_bgr.shape
            raise ModelError(f"expected a BGR image HxWx3, got shape {shape}", "pass a decoded colour frame")
        if image_bgr.shape[2] == 4:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
        sh, sw = image_bgr.shape[:2]
        if self.resize == "stretch":
            if (sw, sh) == (self.w, self.h):
                cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB, dst=self._rgb)
            else:
                cv2.resize(image_bgr, (self.w, self.h), dst=self._resized, interpolation=cv2.INTER_LINEAR)
                cv2.cvtColor(self._resized, cv2.COLOR_BGR2RGB, dst=self._rgb)
            return self._rgb, Transform(sw, sh, self.w, self.h, self.w / sw, self.h / sh)
        s = min(self.w / sw, self.h / sh)
        nw, nh = max(1, round(sw * s)), max(1, round(sh * s))
        px, py = (self.w - nw) // 2, (self.h - nh) // 2
        self._rgb[:] = self.pad_value
        small = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        self._rgb[py : py + nh, px : px + nw] = small[:, :, ::-1]
        return self._rgb, Transform(sw, sh, self.w, self.h, s, s, float(px), float(py))

    def prepare(self, image_bgr: np.ndarray) -> Prepared:
        """The model's input for ``image_bgr``, computed into a fresh array (no shared buffer).

        Safe to call from the camera's own thread, while the interpreter runs another frame: the
        resize, colour swap and normalisation then happen where the frame was just decoded (its
        pixels still in that core's cache) and off the inference thread, which only copies the
        result into its input tensor (:meth:`set_prepared`).
        """
        import cv2

        if image_bgr is not None and image_bgr.ndim == 3 and image_bgr.shape[2] == 4:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
            self.rgb(image_bgr)  # raises the same ModelError as the direct path (before any buffer)
        sh, sw = image_bgr.shape[:2]
        if self.resize == "stretch":
            small = (
                image_bgr
                if (sw, sh) == (self.w, self.h)
                else cv2.resize(image_bgr, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
            )
            rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
            tf = Transform(sw, sh, self.w, self.h, self.w / sw, self.h / sh)
        else:
            s = min(self.w / sw, self.h / sh)
            nw, nh = max(1, round(sw * s)), max(1, round(sh * s))
            px, py = (self.w - nw) // 2, (self.h - nh) // 2
            rgb = np.full((self.h, self.w, 3), self.pad_value, np.uint8)
            small = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
            rgb[py : py + nh, px : px + nw] = small[:, :, ::-1]
            tf = Transform(sw, sh, self.w, self.h, s, s, float(px), float(py))
        data = rgb if self.lut is None else np.take(self.lut, np.asarray(rgb, np.uint8))
        return Prepared(self.key, data, tf)

    @property
    def key(self) -> tuple:
        """What a prepared input must match to be written into this interpreter's input."""
        return (
            self.h,
            self.w,
            str(self.detail["dtype"]),
            self.resize,
            id(self.lut) if self.lut is not None else 0,
        )

    def set_prepared(self, prepared: Prepared) -> Transform | None:
        """Write a :meth:`prepare` result into the input tensor. None (nothing written) when it was
        made for another input (the engine fell back to another interpreter meanwhile)."""
        if prepared.key != self.key:
            return None
        # set_tensor copies with the GIL held (about 11 us for 300x300x3). A numpy copy of this size
        # releases the GIL, and the results thread, just woken by the previous frame's hand-off, takes
        # it: inference then waited for that thread's whole turn (0.5 ms a frame) before invoke().
        self.interpreter.set_tensor(self.detail["index"], prepared.data.reshape(self.detail["shape"]))
        return prepared.transform

    def set_input(self, image_bgr: np.ndarray) -> Transform:
        """Fit ``image_bgr`` to the model and write it into the input tensor.

        Args:
            image_bgr: HxWx3 uint8 BGR frame (OpenCV layout), any size.

        Returns:
            The :class:`Transform` that maps the model's boxes back to ``image_bgr`` pixels.
        """
        rgb, tf = self.rgb(image_bgr)
        view = self.interpreter.tensor(self.detail["index"])()[0]
        if self.lut is None:
            view[...] = rgb
        else:
            np.take(self.lut, rgb, out=view)
        del view
        return tf
