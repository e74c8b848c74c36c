"""``edge-agent simulate-serial``: a fake serial device on a pseudo-terminal.

The simulator opens a pty, points a symlink (``--link``, like a /dev/serial/by-id path) at its
slave side, and writes the device's byte stream to the master side: real frame formats, line noise
(garbage, truncated frames, bad checksums) and, with ``unplug_every_s``, an unplug/replug cycle:
the pty is closed (the reader gets an I/O error, as with a pulled USB adapter), the link removed,
and after ``unplug_for_s`` a new pty appears behind the same link. Bytes the host writes are
answered (passive-mode reads, SDS011 queries, OPS243 unit commands, MCU commands).
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
import tty
from pathlib import Path

from firmware_bridge.simstreams import corrupt, make_model


class PtyLink:
    """A pty whose slave is reachable through a symlink that survives replugs."""

    def __init__(self, link: str | Path) -> None:
        self.link = Path(link)
        self.master = -1
        self.slave = -1
        self.slave_name = ""

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self.slave)
        tmp = self.link.with_name(self.link.name + ".tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link)  # atomic re-point

    def unplug(self) -> None:
        try:
            self.link.unlink()
        except FileNotFoundError:
            pass
        for fd in (self.master, self.slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = -1

    @property
    def plugged(self) -> bool:
        return self.master >= 0

    def write(self, data: bytes) -> int:
        """Write what fits; like a UART nobody reads, the rest is lost."""
        if not self.plugged or not data:
            return 0
        try:
            return os.write(self.master, data)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return 0
            raise

    def read(self) -> bytes:
        if not self.plugged:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return b""
            raise


class Simulator:
    """Runs one simulated device until ``stop()`` or ``duration_s``.

    Args:
        device: pms5003, pms7003, sds011, nmea, ops243 or mcu.
        link: the symlink path the host opens.
        noise: probability per frame of each fault (garbage, truncation/bit flip).
        unplug_every_s / unplug_for_s: the unplug/replug cycle (0: never unplug).
        rate: reports per second (default: the device's own).
        seed: random seed (reproducible streams).
        model_options: extra options of the device model (mcu: ignore_commands, silent).
    """

    def __init__(
        self,
        device: str,
        link: str | Path,
        *,
        noise: float = 0.0,
        unplug_every_s: float = 0.0,
        unplug_for_s: float = 1.0,
        rate: float | None = None,
        seed: int | None = None,
        duration_s: float | None = None,
        model_options: dict | None = None,
    ) -> None:
        self.device = device
        self.rng = random.Random(seed)
        self.model = make_model(device, self.rng, **(model_options or {}))
        self.pty = PtyLink(link)
        self.noise = noise
        self.unplug_every_s, self.unplug_for_s = unplug_every_s, unplug_for_s
        self.rate = rate
        self.duration_s = duration_s
        self.unplugs = 0
        self.frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = bytearray()

    def start(self) -> Simulator:
        self.pty.plug()
        self._thread = threading.Thread(
            target=self.run, kwargs={"plugged": True}, name=f"sim-{self.device}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.pty.unplug()

    def unplug_now(self, for_s: float | None = None) -> None:
        """Unplug at once and replug after ``for_s`` (from another thread)."""
        self._unplug_req = self.unplug_for_s if for_s is None else for_s

    _unplug_req: float | None = None

    def run(self, plugged: bool = False) -> None:
        if not plugged:
            self.pty.plug()
        end = None if self.duration_s is None else time.monotonic() + self.duration_s
        next_unplug = time.monotonic() + self.unplug_every_s if self.unplug_every_s > 0 else None
        self.pty.write(self.model.start())
        next_tick = time.monotonic() + 0.2
        while not self._stop.is_set() and (end is None or time.monotonic() < end):
            now = time.monotonic()
            if self._unplug_req is not None or (next_unplug is not None and now >= next_unplug):
                gone = self._unplug_req if self._unplug_req is not None else self.unplug_for_s
                self._unplug_req = None
                self.pty.unplug()
                self.unplugs += 1
                if self._stop.wait(gone):
                    break
                self.pty.plug()
                self.pty.write(self.model.start())
                if next_unplug is not None:
                    next_unplug = time.monotonic() + self.unplug_every_s
            data = self.pty.read()
            if data:
                self.received += data[-4096:]
                del self.received[:-65536]
                self.pty.write(corrupt(self.model.answer(data), self.rng, self.noise))
            if now >= next_tick:
                frame = self.model.tick()
                if frame:
                    self.frames += 1
                    self.pty.write(corrupt(frame, self.rng, self.noise))
                interval = 1.0 / self.rate if self.rate else self.model.interval_s
                next_tick = max(next_tick + interval, now)
            self._stop.wait(0.01)
        if not plugged:
            self.pty.unplug()
