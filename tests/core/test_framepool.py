"""The camera's frame buffers (agent/sources/framepool.py), on the real clip through real OpenCV/FFmpeg:
a buffer is decoded into again only once nothing holds it, and a held frame never changes."""

from __future__ import annotations

import cv2
import numpy as np

from agent.config import CameraConfig
from agent.sources.framepool import POOL_SIZE, FramePool
from agent.sources.readers import OpenCVReader


def _reference(clip, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


def _reader(clip) -> OpenCVReader:
    return OpenCVReader(str(clip), cv2.CAP_FFMPEG, live=False)


def test_released_frames_are_decoded_into_again(media_path):
    clip = media_path("traffic_frames.mp4")
    ref = _reference(clip, 20)
    r = _reader(clip)
    seen = set()
    for i in range(20):
        img = r.read()
        assert np.array_equal(img, ref[i]), f"frame {i} decoded into a reused buffer differs"
        seen.add(id(img))
        del img  # the stages let it go
    r.close()
    assert r.pool.reused == 19 and r.pool.fresh == 1
    assert len(seen) == 1  # one buffer served every frame


def test_held_frames_and_views_are_never_overwritten(media_path):
    clip = media_path("traffic_frames.mp4")
    ref = _reference(clip, 20)
    r = _reader(clip)
    held = []  # every third frame stays alive (a queue, a snapshot), one more only as a view (a crop)
    view = None
    for i in range(20):
        img = r.read()
        if i % 3 == 0:
            held.append((i, img))
        if i == 4:
            view = (i, img[10:50, 20:80])
        del img
    for i, img in held:
        assert np.array_equal(img, ref[i]), f"held frame {i} was written over"
    assert view is not None and np.array_equal(view[1], ref[view[0]][10:50, 20:80])
    assert r.pool.buffers <= POOL_SIZE
    assert r.pool.reused > 0
    r.close()


def test_a_full_pool_of_busy_buffers_falls_back_to_fresh_arrays(media_path):
    clip = media_path("traffic_frames.mp4")
    r = _reader(clip)
    r.pool = FramePool(size=2)
    held = [r.read() for _ in range(5)]  # nothing let go: every read needs a new array
    assert len({id(x) for x in held}) == 5
    assert r.pool.buffers == 2 and r.pool.reused == 0 and r.pool.fresh == 5
    held.clear()
    r.read()
    assert r.pool.reused == 1
    r.close()


def test_a_new_resolution_drops_the_old_buffers():
    pool = FramePool()
    a = np.zeros((4, 6, 3), np.uint8)
    pool.keep(None, a)
    del a
    b = pool.take()
    assert b is not None and b.shape == (4, 6, 3)
    pool.keep(b, np.zeros((8, 6, 3), np.uint8))  # the decoder allocated: another size
    assert pool.buffers == 1
    c = pool.take()
    assert c is not None and c.shape == (8, 6, 3)


def test_a_file_camera_delivers_the_same_pixels_with_the_pool(media_path):
    from agent.sources.camera import CameraSource

    clip = media_path("traffic_frames.mp4")
    ref = _reference(clip, 20)
    cam = CameraSource(CameraConfig(name="c", source=str(clip), realtime=False, detect_fps=120)).start()
    got = 0
    while got < 20:
        f = cam.slot.take(timeout=10)
        assert f is not None, "the camera stopped offering frames"
        assert np.array_equal(f.image, ref[f.index])
        got += 1
        del f
    cam.stop()


def test_buffers_left_over_from_a_burst_are_let_go(media_path):
    from agent.sources import framepool

    r = _reader(media_path("traffic_frames.mp4"))
    burst = [r.read() for _ in range(5)]  # the stages held five frames at once
    assert r.pool.buffers == 5
    burst.clear()
    for _ in range(framepool.SHRINK_AFTER * 3 + 10):  # then one at a time again (the clip loops)
        img = r.read()
        if img is None:
            assert r.rewind()
            continue
        del img
    assert r.pool.shrunk == 3 and r.pool.buffers == 2  # one let go every SHRINK_AFTER reads
    r.close()
