"""A real RTSP camera on loopback for the tests: gst-rtsp-server (python3-gi) fed by ffmpeg.

``RtspCamera`` starts ``rtsp_server.py`` under the system python3 (where python3-gi lives) on a
random port, and an ffmpeg that plays a clip in real time (``-re``, looping) into it as RTP. The
clips are the mirror's motorway clip transcoded once per session to H.264 at the sizes the tests
ask for (short GOP, no B-frames), so the feed itself is a cheap ``-c copy``.

- ``stall()`` / ``resume()``: SIGSTOP / SIGCONT the feed: the stream stalls with the RTSP
  connection open (the server keeps the session, no more packets).
- ``stop()`` / ``start(clip)``: the server goes away (connection closed) and comes back on the
  same port, possibly with another clip (another resolution).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM_PY = "/usr/bin/python3"


def missing() -> str | None:
    """Why the RTSP tests cannot run here (None when they can)."""
    if not shutil.which("ffmpeg"):
        return "ffmpeg is not installed (scripts/test.sh installs it: apt-get install ffmpeg)"
    if not os.path.exists(SYSTEM_PY):
        return f"{SYSTEM_PY} not found (the RTSP server runs on the system python3 with python3-gi)"
    probe = subprocess.run(
        [
            SYSTEM_PY,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
            "assert all(Gst.ElementFactory.find(n) for n in ('udpsrc', 'rtph264depay', 'h264parse', 'rtph264pay'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return (
            "gst-rtsp-server through python3-gi is not usable "
            f"({last}); scripts/test.sh installs python3-gi gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
        )
    return None


def transcode(src: Path, dst: Path, width: int, height: int) -> Path:
    """``src`` as H.264 Annex B in MPEG-TS at ``width``x``height`` (GOP 12, no B-frames)."""
    if not dst.exists():
        tmp = dst.with_suffix(".part.ts")
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-an",
                "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-preset", "ultrafast",
                "-tune", "zerolatency", "-g", "12", "-bf", "0", "-f", "mpegts", str(tmp),
            ],
            check=True,
            timeout=300,
        )  # fmt: skip
        tmp.rename(dst)
    return dst


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RtspCamera:
    def __init__(self, clip: Path) -> None:
        self.clip = clip
        self.port = 0  # chosen by the first server, kept by the next ones
        self.server: subprocess.Popen | None = None
        self.feed: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, clip: Path | None = None, timeout_s: float = 30.0) -> RtspCamera:
        if clip is not None:
            self.clip = clip
        feed_port = free_port(socket.SOCK_DGRAM)
        deadline = time.monotonic() + timeout_s
        while True:  # the old server's port may take a moment to be free again
            self.server = subprocess.Popen(
                [
                    SYSTEM_PY,
                    str(HERE / "rtsp_server.py"),
                    "--port",
                    str(self.port),
                    "--feed-port",
                    str(feed_port),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            line = self.server.stdout.readline().strip()
            if line.startswith("READY "):
                self.port = int(line.split()[1])
                break
            self.server.wait(5)
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start: {line} {self.server.stderr.read()[-500:]}")
            time.sleep(0.2)
        self.feed = subprocess.Popen(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
                "-i", str(self.clip), "-c", "copy", "-f", "rtp", f"rtp://127.0.0.1:{feed_port}?pkt_size=1316",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def stall(self) -> None:
        assert self.feed is not None
        os.kill(self.feed.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.feed is not None
        os.kill(self.feed.pid, signal.SIGCONT)

    def stop(self) -> None:
        for p in (self.feed, self.server):
            if p is None or p.poll() is not None:
                continue
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.feed = self.server = None


class SilentServer:
    """A TCP server that accepts and never answers: a dead RTSP server whose port is still open."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()
