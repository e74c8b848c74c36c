"""Small helpers over a plain interpreter's tensors: lookup, (de)quantization, input size.

They take the interpreter itself (LiteRT or tflite-runtime, any delegate), like pycoral's
``common`` adapter.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def input_details(interpreter: Any, index: int = 0) -> dict:
    """The details dict of input ``index``."""
    return interpreter.get_input_details()[index]


def input_size(interpreter: Any, index: int = 0) -> tuple[int, int]:
    """The image input's size.

    Args:
        interpreter: an allocated interpreter.
        index: which input (0: the image).

    Returns:
        ``(width, height)``.
    """
    _, h, w, _ = input_details(interpreter, index)["shape"]
    return int(w), int(h)


def quant_params(detail: dict) -> tuple[float, int]:
    """``(scale, zero_point)`` of a tensor; ``(0.0, 0)`` when it is not quantized."""
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales")
    zps = qp.get("zero_points")
    if scales is not None and zps is not None and len(scales) == 1:
        return float(scales[0]), int(zps[0])
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Real values of an output tensor (float32), from its quantization parameters.

    Args:
        values: the raw tensor (uint8, int8, int16, int32 or float).
        detail: the tensor's details dict.

    Returns:
        float32 array with ``scale * (q - zero_point)``; float tensors are returned as float32.
    """
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32, copy=False)
    scale, zp = quant_params(detail)
    if scale == 0.0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zp) * scale


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Values for an input tensor from real values, rounded and clipped to its dtype."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype)
    scale, zp = quant_params(detail)
    q = np.round(values / scale + zp) if scale else np.round(values)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)
