"""Lift the detection cap that SSD exports bake into ``TFLite_Detection_PostProcess``.

Most SSD ``.tflite`` exports (Google's ``coco_ssd_mobilenet_v1_1.0_quant``, TF2 FPNLite exports, the
AutoML traffic model) carry the postprocess op's options in the file, with ``max_detections`` set
to 10 (or 40). On a road with more than ten objects in view, the ten slots fill up with whatever
scores highest (often far-away specks or a frame-wide box) and the vehicles at the counting line
are simply not reported, frame after frame: no tracker can count what it is never given.

The op sizes its outputs from that option when the interpreter is built, so raising it is a
change of one integer in the op's options (a FlexBuffer map inside the model). It is done on the
model bytes in memory; the file on disk (pinned by sha256) is never touched.
"""

from __future__ import annotations

import logging
import struct

log = logging.getLogger(__name__)

_KEY = b"max_detections\x00"


def _options_blob(data: bytes | bytearray, key_at: int) -> tuple[int, int, dict] | None:
    """Find the FlexBuffer map holding ``key_at``: (start, length, decoded) or None."""
    from flatbuffers import flexbuffers

    # custom_options is a flatbuffer [ubyte] vector: a uint32 length, then the FlexBuffer bytes
    for q in range(key_at - 4, max(0, key_at - 512), -1):
        (n,) = struct.unpack_from("<I", data, q)
        if not (q + 4 <= key_at < q + 4 + n) or n > 4096 or q + 4 + n > len(data):
            continue
        try:
            opts = flexbuffers.Loads(bytes(data[q + 4 : q + 4 + n]))
        except Exception:
            continue
        if isinstance(opts, dict) and isinstance(opts.get("max_detections"), int):
            return q + 4, n, opts
    return None


def raise_max_detections(data: bytes, wanted: int) -> tuple[bytes, int | None]:
    """Return the model bytes with every detection postprocess op reporting up to ``wanted``.

    Args:
        data: the ``.tflite`` file's bytes.
        wanted: the number of detections per frame the agent keeps (``inference.max_detections``).

    Returns:
        ``(bytes, old)``: the (possibly) changed model and the cap it had (``None`` when the model
        has no such op, or its cap is already at least ``wanted``, or it could not be changed
        safely; then the bytes are the input's).
    """
    from flatbuffers import flexbuffers

    at = data.find(_KEY)
    if at < 0:
        return data, None
    out = bytearray(data)
    old: int | None = None
    while at >= 0:
        found = _options_blob(out, at)
        if found is not None:
            start, n, opts = found
            if opts["max_detections"] < wanted:
                new = dict(opts, max_detections=int(wanted))
                blob = flexbuffers.Dumps(new)
                if len(blob) == n and flexbuffers.Loads(blob) == new:
                    old = opts["max_detections"]
                    out[start : start + n] = blob
                else:  # a different encoding size would need a rewrite of the flatbuffer: leave it
                    log.info(
                        "detection cap of the model left at %d (options not rewritable)",
                        opts["max_detections"],
                    )
        at = out.find(_KEY, at + len(_KEY))
    return (bytes(out), old) if old is not None else (data, None)
