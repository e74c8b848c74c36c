"""Fixtures: a real RTSP camera on loopback (see rtsp.py), and the clips it plays."""

from __future__ import annotations

import pytest

from tests.cameras import rtsp


@pytest.fixture(scope="session")
def rtsp_clips(media_path, tmp_path_factory):
    """{(w, h): Path} of the motorway clip as H.264 MPEG-TS at 640x360 and 320x180."""
    why = rtsp.missing()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("rtsp-clips")
    src = media_path("4ku_traffic.mp4")
    return {
        size: rtsp.transcode(src, root / f"traffic_{size[0]}x{size[1]}.ts", *size)
        for size in ((640, 360), (320, 180))
    }


@pytest.fixture
def rtsp_camera(rtsp_clips):
    cam = rtsp.RtspCamera(rtsp_clips[(640, 360)]).start()
    yield cam
    cam.stop()
