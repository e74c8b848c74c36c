"""A GStreamer source on an OpenCV without GStreamer is one clear, permanent error (issue #16, item 10)."""

from __future__ import annotations

import logging
import time

import cv2
import pytest

from agent.config import CameraConfig
from agent.sources.camera import CameraSource


def test_gstreamer_source_without_gstreamer_is_one_error_not_retries(caplog):
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer: the pipeline would open (the Jetson case)")
    caplog.set_level(logging.INFO)
    cam = CameraSource(
        CameraConfig.model_validate(
            {
                "name": "csi",
                "source": "gst: videotestsrc ! appsink",
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.1,
            }
        )
    )
    cam.start()
    try:
        deadline = time.monotonic() + 20
        while cam.state != "down" and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # with retries at 0.05-0.1 s, several would have happened by now
        state = cam.state
    finally:
        cam.stop()
    assert state == "down"
    assert "no GStreamer support" in (cam.last_error or "") and "fix:" in cam.last_error
    tries = [r for r in caplog.records if "GStreamer" in r.getMessage()]
    assert len(tries) == 1 and tries[0].levelno == logging.ERROR, [r.getMessage() for r in tries]
