"""The inference engine the pipeline calls: one model on one interpreter, frames in, results out.

``load_engine`` (:mod:`agent.inference.loading`) resolves a catalog name (pulling it when allowed) or
a ``.tflite`` path, builds the interpreter on the best accelerator (:mod:`agent.inference.runtime`),
picks the family adapter (from the catalog, the config, or the model's tensors) and the labels.

An :class:`Engine` is used by one thread at a time (TFLite interpreters are not thread-safe). Per
frame it reuses its buffers: the frame is resized into a preallocated array and written straight
into the input tensor; only the detections themselves are new objects.

An accelerator lost while running (a USB Coral that resets or is unplugged, a GPU driver that
dies) makes ``invoke()`` fail. After :data:`FALLBACK_AFTER` failed invokes in a row the engine
moves to the next accelerator in the order (Edge TPU, GPU, CPU), runs the frame again there, and
records why (:attr:`Engine.fallback`). It then re-probes the lost accelerator, every
:data:`PROBE_INITIAL_S` doubling up to :data:`PROBE_MAX_S`, and moves back when it loads again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.errors import ModelError
from agent.inference.adapters import Adapter
from agent.inference.fallback import FALLBACK_AFTER, AcceleratorFallback
from agent.inference.labels import label_of
from agent.inference.preprocess import Prepared, Preprocessor, Transform
from agent.inference.runtime import InterpreterInfo
from agent.types import Classification, Detection, Record

log = logging.getLogger(__name__)

PROBE_INITIAL_S = 10.0
PROBE_MAX_S = 300.0


@dataclass(slots=True)
class Outputs:
    """What :meth:`Engine.run_all` decoded from one frame."""

    detections: list[Detection] = field(default_factory=list)
    classifications: list[Classification] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # other kinds (Adapter.records)
    timings: dict[str, float] = field(default_factory=dict)


class Engine(AcceleratorFallback):
    """One loaded model.

    Attributes:
        name: catalog name, or the file's stem for a path.
        path: the model file loaded (the Edge TPU variant when the TPU is active).
        family: ``ssd``, ``yolo``, ``classifier``, ``recurrent``, ``blazeface`` or a registered one.
        task: ``detect``, ``classify`` or a registered family's own (its output is records only).
        accelerator: ``cpu``, ``edgetpu``, ``gpu`` or ``delegate``.
        accelerator_reasons: why the other accelerators were skipped.
        runtime: ``litert`` or ``tflite-runtime``.
        input_size: model input ``(width, height)``.
        labels: ``{class_id: name}``.
    """

    def __init__(
        self,
        name: str,
        info: InterpreterInfo,
        adapter: Adapter,
        labels: dict[int, str],
        inference_cfg: Any,
        *,
        label_offset: int = 0,
    ) -> None:
        self.name = name
        self.path = info.model_path
        self.interpreter = info.interpreter
        self.accelerator = info.accelerator
        self.accelerator_reasons = list(info.reasons)
        self.calibration: dict[str, float] | None = None  # tracker thresholds (catalog), see load_engine
        self.runtime = info.runtime
        self.adapter = adapter
        self.family = adapter.family
        self.task = adapter.task
        self.labels = labels
        self.label_offset = label_offset
        self.cfg = inference_cfg
        self._pre = Preprocessor(
            self.interpreter,
            adapter.image_input,
            mean=adapter.mean,
            std=adapter.std,
            resize=inference_cfg.resize,
            pad_value=adapter.pad_value,
        )
        self.input_size = (self._pre.w, self._pre.h)
        self._keep = set(inference_cfg.labels_keep or ())
        self._skip_background = tuple(i for i, n in labels.items() if n.lower() == "background")
        self._transform: Transform | None = None
        # mid-run fallback: rebuild(accelerator) -> (InterpreterInfo, Adapter); set by load_engine
        self.rebuild: Any = None
        self.preferred = info.accelerator  # what the engine started on, and moves back to
        self.invoke_errors_in_row = 0
        self.fallback: dict[str, Any] | None = None  # while running below the preferred accelerator
        self.switches: list[dict[str, Any]] = []  # the last switches, newest last
        self.probe_initial_s = PROBE_INITIAL_S
        self.probe_max_s = PROBE_MAX_S
        self._probe_delay = 0.0
        self.next_probe_at = 0.0  # monotonic time of the next re-probe of the lost accelerator
        self._good_since_back = 0

    def __repr__(self) -> str:
        return (
            f"Engine({self.name!r}, family={self.family}, accelerator={self.accelerator}, "
            f"input={self.input_size[0]}x{self.input_size[1]})"
        )

    # -- raw access (benchmark) ---------------------------------------------------------------
    def set_input_from(self, image_bgr: np.ndarray, *, state_key: str = "default") -> Transform:
        """Preprocess a frame into the input tensor (and set recurrent state).

        Args:
            image_bgr: HxWx3 uint8 BGR frame.
            state_key: whose recurrent state to feed.

        Returns:
            The transform mapping model boxes back to the frame.
        """
        self._transform = self._pre.set_input(image_bgr)
        self.adapter.before_invoke(state_key)
        return self._transform

    def prepare(self, image_bgr: np.ndarray) -> Prepared | None:
        """The frame fitted to this model's input, ahead of :meth:`run` and from any thread (the
        camera's, right after decoding). Recurrent state is still fed in :meth:`run`."""
        return self._pre.prepare(image_bgr)

    def invoke(self) -> None:
        """Run the model on the current input (nothing else)."""
        try:
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(
                f"model {self.name} failed while running: {first}",
                'the model or its delegate is broken; re-pull it or use inference.accelerator = "cpu"',
            ) from None

    # -- results -------------------------------------------------------------------------------
    def run(
        self,
        image_bgr: np.ndarray,
        *,
        state_key: str = "default",
        threshold: float | None = None,
        top_k: int | None = None,
        prepared: Prepared | None = None,
    ) -> tuple[list[Detection], list[Classification], dict[str, float]]:
        """Preprocess, invoke and decode one frame: ``(detections, classifications, timings)``, as
        :meth:`run_all` (which also gives the records of other kinds)."""
        out = self.run_all(
            image_bgr, state_key=state_key, threshold=threshold, top_k=top_k, prepared=prepared
        )
        return out.detections, out.classifications, out.timings

    def run_all(
        self,
        image_bgr: np.ndarray,
        *,
        state_key: str = "default",
        threshold: float | None = None,
        top_k: int | None = None,
        prepared: Prepared | None = None,
    ) -> Outputs:
        """Preprocess, invoke and decode one frame.

        Args:
            image_bgr: HxWx3 uint8 BGR frame (any size).
            state_key: the camera, for recurrent models (each keeps its own state).
            threshold: minimum score (default ``inference.threshold``).
            top_k: classifiers: most classes (default ``inference.top_k``).
            prepared: ``image_bgr`` already fitted to the input (:meth:`prepare`); used when it
                matches the current interpreter, else the frame is preprocessed here.

        Returns:
            :class:`Outputs`: detection boxes are source-frame pixels ``(x1, y1, x2, y2)``, best
            first; records are the adapter's own (:meth:`Adapter.records`); timings has
            ``preprocess_ms``, ``invoke_ms``, ``postprocess_ms``.
        """
        thr = self.cfg.threshold if threshold is None else threshold
        if self.fallback is not None and time.monotonic() >= self.next_probe_at:
            self._probe_back()
        t0 = time.perf_counter()
        tf = self._pre.set_prepared(prepared) if prepared is not None else None
        if tf is None:
            tf = self.set_input_from(image_bgr, state_key=state_key)
        else:
            self._transform = tf
            self.adapter.before_invoke(state_key)
        t1 = time.perf_counter()
        redone = self._invoke_or_fall_back(image_bgr, state_key)
        if redone is not None:  # the frame again, on the next accelerator
            t0, tf, t1 = redone
        t2 = time.perf_counter()
        self.adapter.after_invoke(state_key)
        out = Outputs()
        if self.task == "detect":
            out.detections = self._detections(tf, thr)
        elif self.task == "classify":
            out.classifications = self._classes(thr, top_k or self.cfg.top_k)
        out.records = self.adapter.records(tf, thr)
        t3 = time.perf_counter()
        out.timings = {
            "preprocess_ms": (t1 - t0) * 1e3,
            "invoke_ms": (t2 - t1) * 1e3,
            "postprocess_ms": (t3 - t2) * 1e3,
        }
        return out

    def _invoke_or_fall_back(
        self, image_bgr: np.ndarray, state_key: str
    ) -> tuple[float, Transform, float] | None:
        """``invoke()``; after :data:`FALLBACK_AFTER` failures in a row, move to the next accelerator
        and run the frame there: then ``(t0, transform, t1)`` of that second preprocessing."""
        redone = None
        try:
            self.invoke()
        except ModelError as exc:
            self.invoke_errors_in_row += 1
            if self.invoke_errors_in_row < FALLBACK_AFTER or not self._fall_back(exc.message):
                raise
            t0 = time.perf_counter()
            tf = self.set_input_from(image_bgr, state_key=state_key)
            redone = (t0, tf, time.perf_counter())
            self.invoke()
        self.invoke_errors_in_row = 0
        if self._probe_delay and self.fallback is None:
            self._good_since_back += 1
            if self._good_since_back >= 1000:  # steady again: a later loss starts a fresh backoff
                self._probe_delay, self._good_since_back = 0.0, 0
        return redone

    def detect(
        self, image_bgr: np.ndarray, *, state_key: str = "default", threshold: float | None = None
    ) -> list[Detection]:
        """Detections in a frame (see :meth:`run`)."""
        if self.task != "detect":
            raise ModelError(
                f"model {self.name} is a classifier, not a detector", "use classify, or a detection model"
            )
        return self.run(image_bgr, state_key=state_key, threshold=threshold)[0]

    def classify(
        self, image_bgr: np.ndarray, *, threshold: float | None = None, top_k: int | None = None
    ) -> list[Classification]:
        """The top-k classes of a frame, best first (see :meth:`run`)."""
        if self.task != "classify":
            raise ModelError(
                f"model {self.name} is a detector, not a classifier", "use detect, or a classification model"
            )
        return self.run(image_bgr, threshold=threshold, top_k=top_k)[1]

    # -- accelerator lost / back ---------------------------------------------------------------
    def _swap(self, info: InterpreterInfo, adapter: Adapter) -> None:
        self.interpreter = info.interpreter
        self.path = info.model_path
        self.accelerator = info.accelerator
        self.runtime = info.runtime
        self.adapter = adapter
        self._pre = Preprocessor(
            self.interpreter,
            adapter.image_input,
            mean=adapter.mean,
            std=adapter.std,
            resize=self.cfg.resize,
            pad_value=adapter.pad_value,
        )
        self._transform = None
        self.invoke_errors_in_row = 0
        self._good_since_back = 0

    def reset_state(self, state_key: str | None = None) -> None:
        """Recurrent models: start ``state_key`` (``None``: every key) from the zero state."""
        self.adapter.reset_state(state_key)

    def _detections(self, tf: Transform, thr: float) -> list[Detection]:
        arr = self.adapter.objects(thr)
        if len(arr.scores) == 0:
            return []
        boxes = tf.to_source(arr.boxes)
        out: list[Detection] = []
        limit = self.cfg.max_detections
        for box, cid, score in zip(boxes.tolist(), arr.class_ids.tolist(), arr.scores.tolist()):
            cid += self.label_offset
            label = label_of(self.labels, cid)
            if self._keep and label not in self._keep:
                continue
            if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                continue
            out.append(Detection(label, cid, score, (box[0], box[1], box[2], box[3])))
            if len(out) >= limit:
                break
        return out

    def _classes(self, thr: float, top_k: int) -> list[Classification]:
        from agent.inference.adapters.classify import get_classes

        scores = self.adapter.scores()
        skip = tuple(i - self.label_offset for i in self._skip_background)
        k = scores.size if self._keep else top_k
        out = []
        for cid, score in get_classes(scores, k, thr, skip):
            cid += self.label_offset
            label = label_of(self.labels, cid)
            if self._keep and label not in self._keep:
                continue
            out.append(Classification(label, cid, score))
            if len(out) >= top_k:
                break
        return out
