"""An RTSP server for the tests (gst-rtsp-server through python3-gi; run by the system python3).

    /usr/bin/python3 rtsp_server.py --port 0 --feed-port UDP_PORT

Serves ``rtsp://127.0.0.1:PORT/cam`` from an H.264 RTP feed that ffmpeg sends to
``rtp://127.0.0.1:UDP_PORT`` (one shared media for every client). Prints ``READY <port>`` once
listening. Stopping the feed (SIGSTOP to ffmpeg) stalls the stream with the RTSP connection open.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--feed-port", type=int, required=True)
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( udpsrc address=127.0.0.1 port={args.feed_port} buffer-size=4194304 "
        'caps="application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96" '
        "! rtph264depay ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("ERROR cannot listen", flush=True)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
