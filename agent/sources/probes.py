"""Checks made before OpenCV opens a source, outside its process-wide open lock: does a network
camera answer, and is anything writing to a FIFO."""

from __future__ import annotations

import os
import re
import select
import socket
import stat
import time
from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """Hide credentials in a camera URL (``rtsp://user:***@host/...``) for logs and status."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "tcp": None}


def probe_url(url: str, timeout_s: float) -> str | None:
    """A quick check, outside OpenCV, that a network camera answers: ``None`` when it does, else why not.

    OpenCV's FFmpeg backend holds one process-wide lock while it opens a source, so an open that
    hangs on a dead server stalls every other camera's open. The probe runs first, in the camera's
    own thread without that lock: a TCP connect (refused / unreachable / timed out), and for RTSP an
    ``OPTIONS`` request that must get an ``RTSP/1.0`` answer (any status, 401 included) within the
    timeout. Schemes without a TCP handshake (udp, srt) are not probed.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return f"bad port in {redact_url(url)}"
    host = parts.hostname
    if not host or not port:
        return None
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout_s:.1f} s"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    try:
        if scheme != "rtsp":
            return None
        clean = parts._replace(netloc=f"{host}:{port}").geturl()
        sock.sendall(f"OPTIONS {clean} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: edge-agent\r\n\r\n".encode())
        buf = b""
        while len(buf) < 5:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"RTSP server {host}:{port} accepted the connection but did not answer within {timeout_s:.1f} s"
            sock.settimeout(left)
            try:
                chunk = sock.recv(64)
            except TimeoutError:
                continue
            except OSError as exc:
                return f"{host}:{port}: {exc.strerror or exc}"
            if not chunk:
                return f"RTSP server {host}:{port} closed the connection without answering"
            buf += chunk
        if not buf.startswith(b"RTSP/"):
            return f"{host}:{port} does not speak RTSP (answered {buf[:16]!r})"
        return None
    finally:
        sock.close()


def wait_fifo_writer(path: str, timeout_s: float) -> str | None:
    """For a FIFO: wait (outside OpenCV's open lock) until a writer has sent data; else why not.

    Opening a FIFO for reading blocks until a writer appears, and FFmpeg's open cannot be
    interrupted, so a FIFO nobody writes to would hold every other camera's open for ever.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISFIFO(st.st_mode):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
    finally:
        # a writer that is present keeps the FIFO open for FFmpeg; its data is not consumed here
        os.close(fd)
    if not ready:
        return f"nothing is writing to the FIFO {path} (waited {timeout_s:.1f} s)"
    return None
