"""Latest-frame handoff between a camera's capture thread and the inference stage.

A slot holds at most one frame. Live sources overwrite it (the newest frame wins; a frame replaced
before inference took it is counted in ``replaced``), so a slow model never builds a queue of stale
frames. Offline files read "as fast as possible" use ``put(block=True)``, which waits for the slot to
empty, so every selected frame is inferred. Each slot can notify a shared :class:`threading.Condition`
so one inference worker can serve several cameras.
"""

from __future__ import annotations

import threading
import time

from agent.types import Frame


class FrameSlot:
    def __init__(self, name: str, notify: threading.Condition | None = None) -> None:
        self.name = name
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self._notify = notify
        self.put_count = 0
        self.replaced = 0
        self.taken = 0
        self.closed = False

    def attach(self, notify: threading.Condition) -> None:
        self._notify = notify

    def put(self, frame: Frame, *, block: bool = False, stop: threading.Event | None = None) -> bool:
        """Offer a frame. Returns False if the slot was closed (or ``stop`` set) while waiting."""
        with self._cond:
            if block:
                while self._frame is not None and not self.closed and not (stop and stop.is_set()):
                    self._cond.wait(0.1)
            if self.closed or (stop is not None and stop.is_set() and block):
                return False
            if self._frame is not None:
                self.replaced += 1
            self._frame = frame
            self.put_count += 1
            self._cond.notify_all()
        if self._notify is not None:
            with self._notify:
                self._notify.notify_all()
        return True

    def take_nowait(self) -> Frame | None:
        with self._cond:
            f = self._frame
            if f is not None:
                self._frame = None
                self.taken += 1
                self._cond.notify_all()
            return f

    def take(self, timeout: float | None = None) -> Frame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._frame is None and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.5)
        return self.take_nowait()

    def peek_ts(self) -> float | None:
        f = self._frame
        return None if f is None else f.mono

    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self._notify is not None:
            with self._notify:
                self._notify.notify_all()
