"""Cameras (each yields a frame) and models (sha256 verified, loaded on the configured accelerator)."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ModelError
from agent.service.doctor_checks.base import Check, Context, Result, fail, ok, skip, warn

if TYPE_CHECKING:
    from agent.config import AgentConfig, CameraConfig


# -- cameras -------------------------------------------------------------------------------------


def camera_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    first = Check("opencv", "camera", lambda: check_opencv(cfg), ctx.timeout_s)
    if not cfg.cameras:
        return [first, Check("camera", "camera", lambda: skip("no cameras configured"), ctx.timeout_s)]
    return [first] + [
        Check(f"camera:{c.name}", "camera", partial(check_camera, c, ctx.timeout_s), ctx.timeout_s + 2)
        for c in cfg.cameras
    ]


def check_opencv(cfg: AgentConfig) -> Result:
    """Which OpenCV decodes the cameras: pip wheel or system build, its version, GStreamer or not."""
    from agent.opencv import MISSING_HINT, MissingOpenCV, info

    try:
        cv = info()
    except MissingOpenCV as exc:
        return fail(exc.message, MISSING_HINT)
    from agent.sources.readers import guess_kind  # imports cv2

    data: dict[str, Any] = {
        "version": cv.version,
        "origin": cv.origin,
        "package": cv.package,
        "path": cv.path,
    }
    data["gstreamer"] = cv.gstreamer
    gst = [
        c.name
        for c in cfg.cameras
        if c.enabled and (guess_kind(c.source) if c.kind == "auto" else c.kind) == "gstreamer"
    ]
    if gst and not cv.gstreamer:
        return fail(
            f"{cv.describe()}, but camera(s) {', '.join(gst)} are GStreamer pipelines",
            "use an OpenCV built with GStreamer: on a Jetson, JetPack's, with scripts/install.sh"
            " --system-opencv (the pip wheels have no GStreamer)",
            **data,
        )
    return ok(cv.describe(), **data)


def check_camera(cam: CameraConfig, timeout_s: float) -> Result:
    """Open the camera and read one frame; report its resolution. SourceError propagates (a fail)."""
    from agent.sources.probes import redact_url
    from agent.sources.readers import guess_kind, open_reader

    if not cam.enabled:
        return skip("disabled (enabled = false)")
    kind = guess_kind(cam.source) if cam.kind == "auto" else cam.kind
    where = redact_url(cam.source)
    t0 = time.monotonic()
    reader = open_reader(
        cam.source, cam.kind, width=cam.width, height=cam.height, fourcc=cam.fourcc, timeout_s=timeout_s
    )
    try:
        frame = reader.read()
    finally:
        reader.close()
    took = time.monotonic() - t0
    if frame is None:
        return fail(
            f"{kind} {where}: opened but yielded no frame (empty or undecodable)",
            "check that the file/stream holds video OpenCV/FFmpeg can decode (ffprobe it)",
        )
    h, w = frame.shape[:2]
    return ok(f"{kind} {where}: {w}x{h} frame in {took:.1f} s", kind=kind, width=int(w), height=int(h))


# -- models --------------------------------------------------------------------------------------


def model_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    models = sorted({c.model or cfg.inference.model for c in cfg.cameras if c.enabled})
    if not models:
        return [
            Check("model", "model", lambda: skip("no enabled camera, so no model is loaded"), ctx.timeout_s)
        ]
    # a first pull or an Edge TPU/GPU delegate start may take longer than a camera
    tmo = max(2 * ctx.timeout_s, 60.0)
    return [Check(f"model:{m}", "model", partial(check_model, m, cfg), tmo) for m in models]


def _is_path(model: str) -> bool:
    return model.endswith(".tflite") or "/" in model or "\\" in model


def _verify_catalog_file(name: str, cfg: AgentConfig) -> str:
    """sha256-check an installed catalog model (and its Edge TPU variant when it may be used).

    A missing file is pulled (verified) when ``models.auto_pull`` allows, as the agent does at
    start. Returns what happened; raises ModelError on a mismatch or a missing, unpullable file.
    """
    from agent.inference import catalog as cat

    catalog = cat.load_catalog(cfg.models)
    entry = catalog.get(name)
    if entry.kind != "model":
        raise ModelError(
            f"{name} is a media file, not a model",
            "set inference.model (or the camera's model) to a model name",
        )
    entries = [entry]
    if entry.edgetpu_variant and cfg.inference.accelerator in ("auto", "edgetpu"):
        entries.append(catalog.get(entry.edgetpu_variant))
    notes = []
    for e in entries:
        p = cat.installed_path(e, cfg.models)
        if not p.is_file():
            if e is not entry:  # the Edge TPU file is optional under auto; load_engine says if it matters
                continue
            if not cfg.models.auto_pull:
                raise ModelError(
                    f"model {e.name} is not installed ({p} does not exist)",
                    f"run `edge-agent models pull {e.name}` (add --mirror DIR offline)",
                )
            src = cat.mirror_from(None, cfg.models)
            cat.pull_entry(e, cfg.models, src)  # verifies the sha256 before installing
            notes.append(f"pulled from {src or e.url}")
            continue
        got = cat.sha256_file(p)
        if got != e.sha256:
            raise ModelError(
                f"{p}: sha256 mismatch (catalog {e.sha256[:12]}..., file {got[:12]}...): "
                "the file is corrupt, truncated or a different version",
                f"reinstall it: `edge-agent models pull {e.name} --force` (add --mirror DIR offline)",
            )
    return "sha256 ok" + (f", {'; '.join(notes)}" if notes else "")


def _tpu_present() -> str | None:
    """A visible Edge TPU (PCIe node or USB device), or None."""
    apex = sorted(glob.glob("/dev/apex_*"))
    if apex:
        return apex[0]
    for d in glob.glob("/sys/bus/usb/devices/*"):
        try:
            vid = Path(d, "idVendor").read_text().strip()
            pid = Path(d, "idProduct").read_text().strip()
        except OSError:
            continue
        if (vid, pid) in (("1a6e", "089a"), ("18d1", "9302")):
            return f"USB {vid}:{pid}"
    return None


# LiteRT's C++ side prints this on stderr (fd 2) once per process: noise in the doctor's report
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)
_NATIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_filtered():
    """Catch what native code writes on fd 2 meanwhile and pass it on, less the known noise."""
    with _NATIVE_LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not line.strip().startswith(_NATIVE_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def check_model(model: str, cfg: AgentConfig) -> Result:
    """Verify the file, load it with ``load_engine`` on the configured accelerator, run one frame."""
    import numpy as np

    from agent.inference import load_engine

    if _is_path(model):
        p = Path(model).expanduser()
        if not p.is_file():
            raise ModelError(
                f"model file {p} does not exist",
                "fix the path, or use a catalog name (`edge-agent models list`)",
            )
        verified = "file present (not in the catalog: no sha256 to check)"
    else:
        verified = _verify_catalog_file(model, cfg)
    t0 = time.monotonic()
    with _native_stderr_filtered():
        engine = load_engine(model, cfg.inference, cfg.models)
        w, h = engine.input_size
        engine.run(np.zeros((h, w, 3), np.uint8))  # a model that loads but cannot run is caught here
    took = time.monotonic() - t0
    accel = engine.accelerator
    reasons = list(engine.accelerator_reasons)
    requested = cfg.inference.accelerator
    detail = (
        f"{verified}; {engine.family} {w}x{h} on {accel} ({engine.runtime}), loaded and ran in {took:.1f} s"
    )
    data = {
        "accelerator": accel,
        "requested": requested,
        "fallback_reasons": reasons,
        "family": engine.family,
        "runtime": engine.runtime,
        "file": str(engine.path),
    }
    if reasons:  # "cannot load libedgetpu.so.1: libedgetpu.so.1: cannot open ..." -> once
        detail += "; skipped: " + "; ".join(re.sub(r"(\S+): \1: ", r"\1: ", r) for r in reasons)
    tpu = _tpu_present()
    if requested == "auto" and accel == "cpu" and tpu:
        return warn(
            f"{detail}; an Edge TPU is plugged in ({tpu}) but not used",
            "install the Edge TPU runtime "
            '(apt install libedgetpu1-std), check the reason above, or set inference.accelerator = "edgetpu" '
            "to make it an error",
            **data,
        )
    return ok(detail, **data)


def device_nodes_of_cameras(cfg: AgentConfig) -> list[tuple[str, str]]:
    """``(what, /dev node)`` of the enabled V4L2 cameras."""
    from agent.sources.readers import guess_kind

    out = []
    for c in cfg.cameras:
        if not c.enabled:
            continue
        kind = guess_kind(c.source) if c.kind == "auto" else c.kind
        if kind == "v4l2":
            s = c.source.strip()
            out.append((f"camera {c.name}", f"/dev/video{s}" if s.isdigit() else s))
    return out


def edgetpu_nodes() -> list[tuple[str, str]]:
    """``(what, node)`` of Edge TPUs: /dev/apex_* and the /dev/bus/usb nodes of Coral USB devices."""
    out = [("Edge TPU (PCIe)", p) for p in sorted(glob.glob("/dev/apex_*"))]
    for d in sorted(glob.glob("/sys/bus/usb/devices/*")):
        try:
            vid = Path(d, "idVendor").read_text().strip()
            pid = Path(d, "idProduct").read_text().strip()
            if (vid, pid) not in (("1a6e", "089a"), ("18d1", "9302")):
                continue
            bus = int(Path(d, "busnum").read_text())
            dev = int(Path(d, "devnum").read_text())
        except (OSError, ValueError):
            continue
        node = f"/dev/bus/usb/{bus:03d}/{dev:03d}"
        if os.path.exists(node):
            out.append((f"Edge TPU (USB {vid}:{pid})", node))
    return out
