"""Frame sources on real files, folders and unreachable URLs (real OpenCV / FFmpeg)."""

from __future__ import annotations

import shutil
import socket
import threading
import time

from agent.config import CameraConfig
from agent.sources.camera import CameraSource
from agent.sources.probes import redact_url
from agent.sources.readers import guess_kind


def _drain(cam: CameraSource, timeout: float = 20.0) -> list:
    frames = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = cam.slot.take(timeout=0.5)
        if f is not None:
            frames.append(f)
        elif cam.ended:
            break
    return frames


def test_guess_kind():
    assert guess_kind("0") == "v4l2"
    assert guess_kind("/dev/video2") == "v4l2"
    assert guess_kind("rtsp://cam/stream") == "url"
    assert guess_kind("https://cam/mjpg") == "url"
    assert guess_kind("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! appsink") == "gstreamer"
    assert guess_kind("clip.mp4") == "file"


def test_redact_url():
    assert redact_url("rtsp://admin:hunter2@10.0.0.5/stream") == "rtsp://admin:***@10.0.0.5/stream"


def test_file_as_fast_as_possible_delivers_every_frame(media_path):
    cam = CameraSource(
        CameraConfig(name="c", source=str(media_path("traffic_frames.mp4")), realtime=False, detect_fps=120)
    ).start()
    frames = _drain(cam)
    cam.stop()
    assert [f.index for f in frames] == list(range(20))
    assert frames[0].image.shape == (540, 960, 3)
    assert cam.health()["state"] in ("ended", "stopped")


def test_file_subsampled_by_media_time(media_path):
    # 30 fps file at detect_fps=10 -> every 3rd frame, independent of decode speed
    cam = CameraSource(
        CameraConfig(name="c", source=str(media_path("traffic_frames.mp4")), realtime=False, detect_fps=10)
    ).start()
    frames = _drain(cam)
    cam.stop()
    assert [f.index for f in frames] == list(range(0, 20, 3))


def test_file_read_unpaced_without_detect_fps_delivers_every_frame_and_played_one_at_live_rate(media_path):
    # a recorded survey (realtime = false) with no detect_fps: every frame; the same file played in
    # real time: the live default, 5 a second (every 6th of this 30 fps file)
    src = str(media_path("traffic_frames.mp4"))
    cam = CameraSource(CameraConfig(name="c", source=src, realtime=False)).start()
    frames = _drain(cam)
    cam.stop()
    assert [f.index for f in frames] == list(range(20))
    cam = CameraSource(CameraConfig(name="c", source=src, realtime=True)).start()
    frames = _drain(cam)
    cam.stop()
    assert [f.index for f in frames] == list(range(0, 20, 6))


def test_realtime_file_is_paced(media_path):
    cam = CameraSource(
        CameraConfig(name="c", source=str(media_path("traffic_frames.mp4")), realtime=True, detect_fps=30)
    ).start()
    t0 = time.monotonic()
    assert cam.wait_ended(10)
    elapsed = time.monotonic() - t0
    cam.stop()
    assert elapsed >= 0.5  # 20 frames at 30 fps = 0.67 s of media


def test_looping_file_restarts_with_new_epoch(media_path):
    cam = CameraSource(
        CameraConfig(
            name="c", source=str(media_path("traffic_frames.mp4")), realtime=False, detect_fps=120, loop=True
        )
    ).start()
    frames = []
    while len(frames) < 45:
        f = cam.slot.take(timeout=5)
        assert f is not None
        frames.append(f)
    cam.stop()
    epochs = sorted({f.epoch for f in frames})
    assert len(epochs) >= 3 and cam.reconnects == 0
    assert frames[20].index == 0


def test_image_folder(tmp_path, media_path):
    for n in ("cat.bmp", "bird.bmp"):
        shutil.copy(media_path(n), tmp_path / n)
    (tmp_path / "notes.txt").write_text("not an image")
    cam = CameraSource(
        CameraConfig(name="imgs", source=str(tmp_path), realtime=False, detect_fps=100)
    ).start()
    frames = _drain(cam)
    cam.stop()
    assert len(frames) == 2


def test_url_that_never_opens_reports_down_and_keeps_retrying():
    # a port with nobody listening: connection refused
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cam = CameraSource(
        CameraConfig(
            name="gate",
            source=f"rtsp://user:pw@127.0.0.1:{port}/live",
            reconnect_initial_s=0.05,
            reconnect_max_s=0.2,
            read_timeout_s=1,
        )
    ).start()
    deadline = time.monotonic() + 15
    while cam.state != "down" and time.monotonic() < deadline:
        time.sleep(0.05)
    h = cam.health()
    cam.stop()
    assert h["state"] == "down"
    assert "cannot open" in h["last_error"] and "pw" not in h["last_error"]
    assert h["source"] == f"rtsp://user:***@127.0.0.1:{port}/live"


def test_url_that_hangs_times_out():
    # a server that accepts and never answers: the open must time out, not hang the thread
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    cam = CameraSource(
        CameraConfig(
            name="hang",
            source=f"rtsp://127.0.0.1:{port}/x",
            reconnect_initial_s=0.1,
            reconnect_max_s=0.2,
            read_timeout_s=1,
        )
    ).start()
    deadline = time.monotonic() + 20
    while cam.failures_in_row < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    cam.stop()
    stop.set()
    srv.close()
    assert cam.failures_in_row >= 2
    assert time.monotonic() - cam.progress() < 5  # the capture thread is alive, not stuck


def test_missing_file_and_device(tmp_path):
    cam = CameraSource(
        CameraConfig(
            name="f", source=str(tmp_path / "nope.mp4"), reconnect_initial_s=0.05, reconnect_max_s=0.1
        )
    ).start()
    cam2 = CameraSource(
        CameraConfig(name="v", source="/dev/video99", reconnect_initial_s=0.05, reconnect_max_s=0.1)
    ).start()
    time.sleep(0.5)
    cam.stop()
    cam2.stop()
    assert "does not exist" in cam.last_error
    assert "/dev/video99 does not exist" in cam2.last_error


def test_unpaced_file_without_start_time_is_stamped_on_the_media_clock(media_path):
    """realtime = false: frames come at the consumer's speed, but their stamps step by the file's
    own frame time from when the pass began, so tracking cannot depend on decoding speed."""
    before = time.time()
    cam = CameraSource(
        CameraConfig(name="c", source=str(media_path("traffic_frames.mp4")), realtime=False, detect_fps=120)
    ).start()
    frames = []
    for i in range(20):
        f = cam.slot.take(timeout=10)
        assert f is not None
        frames.append(f)
        time.sleep(0.002 * (i % 4))  # an uneven consumer: the wall-clock gaps vary
    cam.stop()
    fps = 30.0  # traffic_frames.mp4
    t0 = frames[0].ts
    assert before <= t0 <= time.time()
    for f in frames:
        assert abs(f.ts - (t0 + f.index / fps)) < 1e-6, (f.index, f.ts - t0)


def test_media_clock_passes():
    from datetime import datetime, timezone

    from agent.sources.mediaclock import MediaClock

    c = MediaClock(None, realtime=False)
    assert c.stamp(0.0, 0.04, 1000.0) == 1000.0
    assert c.stamp(0.4, 0.04, 1000.05) == 1000.4  # media position, not the wall clock
    c.begin_pass()  # reopened after a failure: anchored again at the wall clock, never before the last stamp
    assert abs(c.stamp(0.0, 0.04, 1000.2) - 1000.44) < 1e-9
    assert abs(c.stamp(0.04, 0.04, 2000.0) - 1000.48) < 1e-9  # the same pass keeps its anchor
    assert MediaClock(None, realtime=True).stamp(0.4, 0.04, 1234.5) == 1234.5  # paced: the wall clock
    looping = MediaClock(None, realtime=False, loop=True)  # a stand-in for a live camera
    assert looping.stamp(0.4, 0.04, 1234.5) == 1234.5
    st = MediaClock(datetime(2026, 5, 4, 7, 30), realtime=False)  # no offset: UTC
    t = datetime(2026, 5, 4, 7, 30, tzinfo=timezone.utc).timestamp()
    assert st.stamp(1.0, 0.04, 99.0) == t + 1.0
    st.next_pass()  # a looping survey continues after the first pass
    assert abs(st.stamp(0.0, 0.04, 99.0) - (t + 1.04)) < 1e-9
