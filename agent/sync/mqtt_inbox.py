"""What other threads hand the MQTT link's thread: a wake-up, and calls to run there.

The link's thread ``select``s on paho's socket and the read end of a socket pair: :meth:`Inbox.wake`
(any thread) writes one byte to it, so the thread looks again at once. Other threads never call paho:
:meth:`Inbox.call` queues a function (publish a command reply, the birth again), wakes the thread,
and waits for the thread to run it (:meth:`Inbox.run`) between network events.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

log = logging.getLogger("agent.sync.mqtt")


class _Call:
    """A piece of work another thread hands to the link's thread (publish a reply, the birth)."""

    __slots__ = ("fn", "result", "done")

    def __init__(self, fn: Callable[[paho.Client], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.done = threading.Event()


class Inbox:
    """The link thread's wake-up socket pair and its queue of calls from other threads."""

    def __init__(self) -> None:
        self.calls: deque[_Call] = deque()
        self.r: socket.socket | None = None  # the wake-up socket pair (made by open)
        self._w: socket.socket | None = None
        self._pending = False

    def open(self) -> None:
        """Make the socket pair (once: a thread still closing keeps the one it has)."""
        if self.r is None:
            self.r, self._w = socket.socketpair()
            self.r.setblocking(False)
            self._w.setblocking(False)
            self._pending = False

    def close(self) -> None:
        for s in (self.r, self._w):
            if s is not None:
                s.close()
        self.r = self._w = None

    def wake(self) -> None:
        """Have the link's thread look again now (any thread; one byte on the wake-up socket, and
        none while one is already waiting to be read)."""
        w = self._w
        if w is not None and not self._pending:
            self._pending = True
            try:
                w.send(b"\0")
            except OSError:  # full (it is being woken anyway) or closed
                pass

    def drain(self) -> None:
        """Read the wake-up bytes (the link's thread, once ``select`` said there are some)."""
        wake = self.r
        assert wake is not None
        try:
            while wake.recv(4096):
                pass
        except OSError:
            pass
        # after reading (cleared before, a wake() in between would leave it set with its byte read:
        # every later wake() skipped). A wake() skipped until here is seen by the pump that follows
        self._pending = False

    def call(self, fn: Callable[[paho.Client], Any], timeout_s: float) -> Any:
        """Queue ``fn`` for the link's thread, wake it and wait (at most ``timeout_s``) for its result."""
        job = _Call(fn)
        self.calls.append(job)
        self.wake()
        job.done.wait(timeout_s)
        return job.result

    def run(self, live: Callable[[], paho.Client | None]) -> None:
        """Run the queued calls (the link's thread) on ``live()``, the client while connected; with
        none they are answered None."""
        calls = self.calls
        while calls:
            job = calls.popleft()
            client = live()
            try:
                if client is not None:
                    job.result = job.fn(client)
            except Exception:  # noqa: BLE001 - one bad call must not end the connection
                log.exception("mqtt: a queued call failed")
            job.done.set()

    def fail(self) -> None:
        """Answer every queued call None (the connection is over)."""
        while self.calls:
            self.calls.popleft().done.set()
