"""Image classifiers: one ``[1, C]`` output (uint8/int8 quantized or float).

``get_scores`` dequantizes the output; ``get_classes`` returns the top-k above a threshold, as
pycoral's ``classify`` adapter. Models with 1001 classes (TF-slim ImageNet) have "background" at
index 0; with a label file whose first line is ``background`` the ids line up, and the background
class is never reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.inference.adapters.base import Adapter
from agent.inference.tensors import dequantize


def get_scores(interpreter: Any) -> np.ndarray:
    """The class scores after ``invoke()``.

    Args:
        interpreter: the interpreter, after ``invoke()``.

    Returns:
        float32 ``[C]`` scores (probabilities for a softmax output; raw logits are softmaxed).
    """
    d = interpreter.get_output_details()[0]
    s = dequantize(interpreter.get_tensor(d["index"]).reshape(-1), d)
    if s.dtype.kind == "f" and (s.min() < -1e-3 or s.max() > 1.0 + 1e-3):  # logits
        e = np.exp(s - s.max())
        s = e / e.sum()
    return s


def get_classes(
    scores: np.ndarray, top_k: int, threshold: float, skip: tuple[int, ...] = ()
) -> list[tuple[int, float]]:
    """The ``top_k`` best classes with a score >= ``threshold``, best first.

    Args:
        scores: ``[C]`` scores from :func:`get_scores`.
        top_k: most classes returned.
        threshold: minimum score.
        skip: class ids never reported (e.g. background).

    Returns:
        List of ``(class_id, score)``.
    """
    k = min(top_k + len(skip), scores.size)
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    out = [(int(i), float(scores[i])) for i in idx if scores[i] >= threshold and int(i) not in skip]
    return out[:top_k]


class ClassifierAdapter(Adapter):
    """Top-k classification."""

    family = "classifier"
    task = "classify"

    def __init__(self, interpreter: Any, **kw: Any) -> None:
        super().__init__(interpreter, **kw)
        outs = interpreter.get_output_details()
        if len(outs) != 1 or len(outs[0]["shape"]) != 2:
            raise ModelError("a classifier has one [1, C] output", "use family ssd or yolo")
        self.num_classes = int(outs[0]["shape"][1])

    def scores(self) -> np.ndarray:
        return get_scores(self.interpreter)
