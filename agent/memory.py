"""Keeping a long-running daemon's memory flat.

glibc gives each thread that allocates its own malloc arena (up to 8 per core). Camera, inference and
results threads each allocate and free multi-megabyte frame buffers, so with many arenas freed
memory stays scattered and the resident size creeps up for days. Capping the arenas at two makes
the frame buffers reuse the same memory. Best effort: only on glibc, a no-op elsewhere; it must run
before the stage threads start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8


def limit_malloc_arenas(n: int = 2) -> bool:
    if os.environ.get("MALLOC_ARENA_MAX"):  # the operator chose already
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = bool(mallopt(M_ARENA_MAX, n))
    log.debug("malloc arenas capped at %d: %s", n, ok)
    return ok
