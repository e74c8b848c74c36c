"""Frame buffers a camera's decoder writes into again, instead of a fresh array per frame.

A 1280x720 frame is 2.7 MB. Allocated fresh for every decoded frame, it costs the camera thread the
page faults of a new block (or, once glibc's mmap threshold has risen above it, a block from the
heap that fragments it), and the resident size steps up whenever the stages happen to hold one more
frame at once. OpenCV's ``VideoCapture.read(image)`` decodes into a given array of the right shape,
so a reader keeps the arrays it has handed out and gives the decoder one that nobody holds any more.

"Nobody holds it" is the array's reference count: a frame in the camera's slot, in the inference or
results stage, in a queue, a view of it (a crop holds its base), or a snapshot waiting to be encoded
all hold a reference, so such a buffer is never written over. The count a free buffer has is
measured once, through the same code path, so it does not depend on the Python version's
bookkeeping. Only the reader's own thread takes and keeps buffers.
"""

from __future__ import annotations

import sys

import numpy as np

#: frames that can be alive at once for one camera: the decoder's, the slot's, the inference
#: stage's, up to 4 in the results queue, the results stage's, and one spare
POOL_SIZE = 9
#: a buffer more than the one taken has been free at every read for this many reads (10 s at 25
#: fps): one is let go, so a burst (a slow results stage filling its queue) does not stay resident
SHRINK_AFTER = 250


def _refs(bufs: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(bufs[i])


_FREE = _refs([np.empty(1, np.uint8)], 0)  # a buffer only the pool's list holds


class FramePool:
    """Up to ``size`` arrays of one shape, handed to the decoder when no one else holds them."""

    def __init__(self, size: int = POOL_SIZE) -> None:
        self.size = size
        self._bufs: list[np.ndarray] = []
        self.reused = 0  # reads that decoded into a kept buffer
        self.fresh = 0  # reads that got a new array (pool empty, full of busy buffers, or a new shape)
        self.shrunk = 0  # buffers let go because more than one stayed free for SHRINK_AFTER reads
        self._spare_reads = 0

    def take(self) -> np.ndarray | None:
        """A kept buffer no one else holds, or None (the decoder then allocates one)."""
        bufs = self._bufs
        free = [i for i in range(len(bufs)) if _refs(bufs, i) == _FREE]
        if not free:
            self._spare_reads = 0
            return None
        if len(free) < 2:
            self._spare_reads = 0
        else:
            self._spare_reads += 1
            if self._spare_reads >= SHRINK_AFTER:  # more buffers than the stages need: one goes
                self._spare_reads = 0
                del bufs[free[-1]]
                self.shrunk += 1
        return bufs[free[0]]

    def keep(self, given: np.ndarray | None, img: np.ndarray) -> None:
        """After a read into ``given``: count it, and keep ``img`` if the decoder allocated it."""
        if given is not None and img is given:
            self.reused += 1
            return
        self.fresh += 1
        if self._bufs and self._bufs[0].shape != img.shape:  # the camera changed resolution
            self._bufs = []
        if len(self._bufs) < self.size and img.flags.c_contiguous and img.flags.writeable:
            self._bufs.append(img)

    @property
    def buffers(self) -> int:
        return len(self._bufs)

    def clear(self) -> None:
        self._bufs = []
