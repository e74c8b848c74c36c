"""agent.opencv: which OpenCV is used (pip wheel or system), GStreamer or not, and a missing cv2."""

from __future__ import annotations

import subprocess
import sys

from agent.config import AgentConfig
from agent.opencv import MissingOpenCV, has_gstreamer, info
from agent.service.doctor_checks.media import check_opencv

BUILD = """
  Video I/O:
    DC1394:                      NO
    FFMPEG:                      YES
      avcodec:                   YES (59.37.100)
    GStreamer:                   {gst}
    v4l/v4l2:                    YES (linux/videodev2.h)
"""


def test_gstreamer_is_read_from_the_build_information():
    assert has_gstreamer(BUILD.format(gst="YES (1.22.0)"))
    assert not has_gstreamer(BUILD.format(gst="NO"))
    assert not has_gstreamer("")


def test_the_test_environment_runs_on_the_pip_wheel():
    cv = info()
    assert cv.origin == "pip" and cv.package and cv.package.startswith("opencv-python-headless ")
    assert cv.describe().startswith(f"OpenCV {cv.version} (pip wheel opencv-python-headless ")
    assert cv.describe().endswith(("GStreamer: yes", "GStreamer: no"))


def test_doctor_says_which_opencv_and_fails_a_gstreamer_camera_without_it(monkeypatch):
    r = check_opencv(AgentConfig())
    assert r.status == "ok" and r.data["origin"] == "pip" and "pip wheel" in r.detail
    cfg = AgentConfig.model_validate(
        {"cameras": [{"name": "csi", "source": "gst:nvarguscamerasrc ! nvvidconv ! appsink"}]}
    )
    r = check_opencv(cfg)
    if not r.data["gstreamer"]:
        assert r.status == "fail" and "csi" in r.detail and "--system-opencv" in r.hint
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails
    r = check_opencv(AgentConfig())
    assert r.status == "fail" and "not installed" in r.detail and "edge-agent[opencv]" in r.hint
    try:
        info()
    except MissingOpenCV as exc:
        assert "--system-opencv" in str(exc) and "fix:" in str(exc)
    else:
        raise AssertionError("no MissingOpenCV")


def test_a_missing_cv2_is_an_error_with_a_fix_not_a_traceback(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path / "a.sqlite"}"\n')
    code = (
        "import sys; sys.modules['cv2'] = None; from agent.cli import main;"
        f" sys.argv = ['edge-agent', 'run', '--config', {str(cfg)!r}, '--duration', '1']; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "error: OpenCV (the cv2 module) is not installed" in r.stderr
    assert "fix: install the pip wheel: pip install 'edge-agent[opencv]'" in r.stderr
