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

import cv2
import numpy as np

from agent.errors import SourceError

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_URL = re.compile(r"^(rtsps?|https?|rtmp|udp|tcp|srt)://", re.I)


def redact_url(url: str) -> str:
    """Hide credentials in a camera URL (``rtsp://user:***@host/...``) for logs and status."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


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
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if n > 0 and not live else None

    def read(self) -> np.ndarray | None:
        ok, img = self.cap.read()
        if not ok or img is None:
            if self.live:
                raise SourceError(
                    f"{self.describe}: no frame (stream ended or camera disconnected)",
                    "the agent reconnects with backoff; check the cable / network if it persists",
                )
            return None
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

    def close(self) -> None:
        self.cap.release()


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
    tmo = int(timeout_s * 1000)
    if kind == "v4l2":
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
    if kind == "url":
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, tmo, cv2.CAP_PROP_READ_TIMEOUT_MSEC, tmo]
        return OpenCVReader(source, cv2.CAP_FFMPEG, live=True, params=params, describe=redact_url(source))
    if kind == "gstreamer":
        pipe = source[4:].strip() if source.startswith("gst:") else source
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            err = SourceError(
                "this OpenCV build has no GStreamer support, so the pipeline cannot be opened",
                "install an OpenCV with GStreamer (on Jetson: the JetPack python3-opencv, with"
                " install.sh --system-opencv) or use a V4L2/RTSP source",
            )
            err.permanent = True  # type: ignore[attr-defined] - retrying cannot help: the camera stops
            raise err
        return OpenCVReader(pipe, cv2.CAP_GSTREAMER, live=True, describe=f"GStreamer pipeline '{pipe[:60]}'")
    if kind == "images":
        if not os.path.isdir(source):
            raise SourceError(f"image folder {source} does not exist", "check the path")
        return ImageFolderReader(source)
    if kind == "file":
        if not os.path.exists(source):
            raise SourceError(
                f"video file {source} does not exist",
                "check the path (relative paths are relative to the working directory)",
            )
        r = OpenCVReader(source, cv2.CAP_FFMPEG, live=False, describe=f"video file {source}")
        return r
    raise SourceError(f"unknown source kind {kind!r}", "use one of v4l2, url, gstreamer, file, images")
