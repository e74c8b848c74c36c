"""The heap trimmer hands freed frame-sized blocks back to the kernel (#15 item 6)."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest

from agent.memory import Trimmer


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def test_trims_once_per_interval() -> None:
    t = Trimmer(interval_s=60.0)
    if t._fn is None:
        pytest.skip("this libc has no malloc_trim")
    assert t.maybe_trim(1000.0) and t.trims == 1
    assert not t.maybe_trim(1030.0)
    assert t.maybe_trim(1060.0) and t.trims == 2
    assert t.last_ms >= 0.0


def test_freed_heap_frames_leave_resident_memory() -> None:
    libc_name = ctypes.util.find_library("c")
    t = Trimmer()
    if t._fn is None or not libc_name:
        pytest.skip("this libc has no malloc_trim")
    # as in the agent after its first frames: glibc's mmap threshold has risen above a frame's
    # size, so 1280x720 frames come from the heap; free all but the last one allocated (which
    # pins the heap's top, so only trimming inside the heap can give the rest back)
    freed = [np.ones((720, 1280, 3), np.uint8) for _ in range(2)]
    del freed  # each freed mmapped block raises the threshold (glibc's dynamic mmap threshold)
    frames = [np.ones((720, 1280, 3), np.uint8) for _ in range(12)]
    keep = frames.pop()
    del frames
    before = _rss_kib()
    assert t.maybe_trim(0.0)
    after = _rss_kib()
    assert before - after > 10 * 2700 // 2, (before, after)  # most of the ~11 x 2.7 MB freed frames
    assert keep.sum() > 0
