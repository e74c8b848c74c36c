"""Readers: open one kind of frame source and yield frames. No threads, no retries here.

``open_reader(cfg)`` picks the reader for a camera's ``source`` (or its explicit ``kind``):

- ``v4l2``: ``/dev/videoN`` or an index, through OpenCV's V4L2 backend (width/height/fourcc);
- ``url``: ``rtsp://``, ``rtsps://``, ``http(s)://``, ``rtmp://`` through FFmpeg, with open/read timeouts;
- ``gstreamer``: a pipeline string ending in ``appsink`` (``gst:`` prefix optional), e.g. a Jetson CSI
  camera via ``nvarguscamerasrc``; needs an OpenCV built with GStreamer;
- ``file``: a video file (FFmpeg);
- ``images``: a folder of images, in name order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from agent.errors import SourceError
from agent.opencv import has_gstreamer
from agent.sources.framepool import FramePool
from agent.sources.probes import probe_url, redact_url, wait_fifo_writer

if TYPE_CHECKING:
    from agent.config import CameraConfig

_cv_log = getattr(getattr(cv2, "utils", None), "logging", None)  # missing in some system builds (Debian 4.6)
if _cv_log is not None:
    _cv_log.setLogLevel(_cv_log.LOG_LEVEL_ERROR)
# RTSP over TCP (interleaved), as Frigate and most NVRs default to: no lost UDP packets on a flaky
# link, one connection to watch. A user's own OPENCV_FFMPEG_CAPTURE_OPTIONS wins.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

# FFmpeg's decoder threads. Its default is one per core, each with its own frames: on a 4-core Pi
# that is ~9 MB more per camera, more CPU per frame, and decoder threads on every core beside the
# model's (docs/cameras.md, "Decoder threads"). A file is read at inference speed, which one thread
# decodes easily; a live stream must keep up with the camera's full rate, so it gets two.
FILE_DECODER_THREADS = 1
STREAM_DECODER_THREADS = 2


def decoder_threads(n: int) -> list[int]:
    """VideoCapture open parameters for ``n`` FFmpeg threads (none where OpenCV lacks the property:
    Debian 12's 4.6 keeps FFmpeg's default)."""
    prop = getattr(cv2, "CAP_PROP_N_THREADS", None)
    return [] if prop is None else [prop, n]


IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_URL = re.compile(r"^(rtsps?|https?|rtmp|udp|tcp|srt)://", re.I)


def guess_kind(source: str) -> str:
    s = source.strip()
    if s.isdigit() or s.startswith("/dev/video") or s.startswith("/dev/v4l/"):
        return "v4l2"
    if _URL.match(s):
        return "url"
    if s.startswith("gst:") or " ! " in s:
        return "gstreamer"
    if os.path.isdir(s):
        return "images"
    return "file"


class Unreachable(SourceError):
    """The network camera's host did not answer the probe (the camera retries it every second)."""


class Reader:
    """Base reader. ``read()`` returns a BGR frame or None at end of stream; raises SourceError on failure."""

    live = True
    fps: float | None = None
    frame_count: int | None = None

    def read(self) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def grab(self) -> bool:
        """Advance one frame without converting it (cheap skip). Returns False at end of stream."""
        return self.read() is not None

    def position_s(self) -> float | None:
        return None

    def rewind(self) -> bool:
        """Start again from the first frame without reopening (files); False: reopen instead."""
        return False

    def close(self) -> None:
        pass


class OpenCVReader(Reader):
    def __init__(
        self,
        source: str | int,
        api: int,
        *,
        live: bool,
        params: list[int] | None = None,
        describe: str = "",
        width: int | None = None,
        height: int | None = None,
        fourcc: str | None = None,
    ) -> None:
        self.describe = describe or str(source)
        self.live = live
        cap = cv2.VideoCapture(source, api, params or [])
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.describe}", _open_hint(self.describe, api))
        if fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc))
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.cap = cap
        self.pool = FramePool()  # decode into the frames the stages have let go (framepool.py)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if n > 0 and not live else None

    def read(self) -> np.ndarray | None:
        buf = self.pool.take()
        ok, img = self.cap.read() if buf is None else self.cap.read(buf)
        if not ok or img is None:
            if self.live:
                raise SourceError(
                    f"{self.describe}: no frame (stream ended or camera disconnected)",
                    "the agent reconnects with backoff; check the cable / network if it persists",
                )
            return None
        self.pool.keep(buf, img)
        return img

    def grab(self) -> bool:
        ok = self.cap.grab()
        if not ok and self.live:
            raise SourceError(f"{self.describe}: no frame (stream ended or camera disconnected)")
        return ok

    def position_s(self) -> float | None:
        if self.live:
            return None
        ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if ms and ms > 0 else None

    def rewind(self) -> bool:
        # a seek, not a reopen: OpenCV serialises FFmpeg opens across the process, so a looping
        # file that reopened on every pass would wait behind any other camera's slow open
        if self.live:
            return False
        try:
            return bool(self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        except cv2.error:
            return False

    def close(self) -> None:
        self.cap.release()
        self.pool.clear()


class ImageFolderReader(Reader):
    live = False

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self.files:
            raise SourceError(
                f"folder {folder} has no images ({', '.join(sorted(IMAGE_EXTS))})",
                "point the camera at a folder of images, or use a video file",
            )
        self.i = 0
        self.fps = 1.0
        self.frame_count = len(self.files)

    def read(self) -> np.ndarray | None:
        while self.i < len(self.files):
            p = self.files[self.i]
            self.i += 1
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                return img
            # an unreadable image is skipped, not fatal
        return None

    def grab(self) -> bool:
        if self.i >= len(self.files):
            return False
        self.i += 1
        return True

    def rewind(self) -> bool:
        self.i = 0
        return True

    def position_s(self) -> float | None:
        return float(self.i - 1)


def _open_hint(describe: str, api: int) -> str:
    if api == cv2.CAP_V4L2:
        return "check the device exists (ls /dev/video*), that the agent's user is in the 'video' group, and no other program holds it"
    if api == cv2.CAP_GSTREAMER:
        return "check the pipeline with gst-launch-1.0 and that it ends in 'appsink'"
    if describe.startswith(("rtsp", "http", "rtmp", "udp", "tcp", "srt")):
        return "check the URL, the credentials and that the camera is reachable (ffprobe URL)"
    return "check the path and that the file is a video OpenCV/FFmpeg can decode"


def open_reader(
    source: str,
    kind: str = "auto",
    *,
    width: int | None = None,
    height: int | None = None,
    fourcc: str | None = None,
    timeout_s: float = 10.0,
) -> Reader:
    """Open a reader for ``source``. Raises SourceError naming the problem and the fix."""
    kind = guess_kind(source) if kind == "auto" else kind
    if kind == "v4l2":
        return _open_v4l2(source, width=width, height=height, fourcc=fourcc)
    if kind == "url":
        return _open_url(source, timeout_s)
    if kind == "gstreamer":
        return _open_gstreamer(source)
    if kind == "images":
        if not os.path.isdir(source):
            raise SourceError(f"image folder {source} does not exist", "check the path")
        return ImageFolderReader(source)
    if kind == "file":
        return _open_file(source, timeout_s)
    raise SourceError(f"unknown source kind {kind!r}", "use one of v4l2, url, gstreamer, file, images")


def open_camera(cfg: CameraConfig, kind: str) -> Reader:
    """Open the reader of a camera: its source as ``kind``, with its capture settings and timeout."""
    return open_reader(
        cfg.source, kind, width=cfg.width, height=cfg.height, fourcc=cfg.fourcc, timeout_s=cfg.read_timeout_s
    )


def _open_v4l2(source: str, *, width: int | None, height: int | None, fourcc: str | None) -> Reader:
    dev: str | int = int(source) if source.strip().isdigit() else source
    if isinstance(dev, str) and not os.path.exists(dev):
        raise SourceError(
            f"camera device {dev} does not exist",
            "check the cable and `ls /dev/video*`; a udev rule can give it a stable name",
        )
    return OpenCVReader(
        dev,
        cv2.CAP_V4L2,
        live=True,
        describe=f"V4L2 camera {source}",
        width=width,
        height=height,
        fourcc=fourcc,
    )


def _open_url(source: str, timeout_s: float) -> Reader:
    """A network camera: probed first (outside OpenCV's open lock), then opened with FFmpeg's timeouts."""
    why = probe_url(source, min(timeout_s, 5.0))
    if why is not None:
        raise Unreachable(
            f"cannot open {redact_url(source)}: {why}",
            "check the URL, the credentials and that the camera is reachable (ffprobe URL)",
        )
    tmo = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, tmo, cv2.CAP_PROP_READ_TIMEOUT_MSEC, tmo]
    params += decoder_threads(STREAM_DECODER_THREADS)
    return OpenCVReader(source, cv2.CAP_FFMPEG, live=True, params=params, describe=redact_url(source))


def _open_gstreamer(source: str) -> Reader:
    pipe = source[4:].strip() if source.startswith("gst:") else source
    if not has_gstreamer(cv2.getBuildInformation()):
        err = SourceError(
            "this OpenCV build has no GStreamer support, so the pipeline cannot be opened",
            "install an OpenCV with GStreamer (on Jetson: the JetPack python3-opencv, with"
            " install.sh --system-opencv) or use a V4L2/RTSP source",
        )
        err.permanent = True  # type: ignore[attr-defined]  # retrying cannot help: the camera stops
        raise err
    return OpenCVReader(pipe, cv2.CAP_GSTREAMER, live=True, describe=f"GStreamer pipeline '{pipe[:60]}'")


def _open_file(source: str, timeout_s: float) -> Reader:
    if not os.path.exists(source):
        raise SourceError(
            f"video file {source} does not exist",
            "check the path (relative paths are relative to the working directory)",
        )
    why = wait_fifo_writer(source, min(timeout_s, 5.0))
    if why is not None:
        raise SourceError(why, "start the program that writes the stream into the FIFO")
    return OpenCVReader(
        source,
        cv2.CAP_FFMPEG,
        live=False,
        params=decoder_threads(FILE_DECODER_THREADS),
        describe=f"video file {source}",
    )
