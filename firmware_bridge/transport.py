"""The serial port: open by path (a /dev/serial/by-id link is resolved at every open), exclusive
lock and chunked reads.

Every pyserial/OS failure becomes :class:`TransportError`; the caller closes, waits (the
service's :class:`agent.backoff.Backoff`) and opens again. Nothing here retries on its own or sleeps while holding a lock.
"""

from __future__ import annotations

import os
import threading

import serial

_PARITY = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
_STOPBITS = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO}


class TransportError(Exception):
    """The port could not be opened, read or written (device gone, busy, permission, ...)."""


class SerialTransport:
    """One serial port. ``read()`` returns b'' on a quiet line and raises TransportError when the
    device is gone. Writes are serialised by a lock (commands come from other threads)."""

    def __init__(
        self,
        port: str,
        baud: int,
        *,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        exclusive: bool = True,
        read_timeout_s: float = 0.1,
    ) -> None:
        self.port = port
        self.baud = baud
        self.bytesize, self.parity, self.stopbits = bytesize, parity, stopbits
        self.exclusive = exclusive
        self.read_timeout_s = read_timeout_s
        self.resolved: str | None = None
        self._ser: serial.Serial | None = None
        self._wlock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        if not os.path.exists(self.port):
            raise TransportError(f"{self.port} does not exist (unplugged?)")
        self.resolved = os.path.realpath(self.port)
        try:
            ser = serial.Serial()
            ser.port = self.port
            ser.baudrate = self.baud
            ser.bytesize = self.bytesize
            ser.parity = _PARITY[self.parity]
            ser.stopbits = _STOPBITS[self.stopbits]
            ser.timeout = self.read_timeout_s
            ser.write_timeout = 1.0
            ser.exclusive = self.exclusive
            ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {self.port}: {exc}") from exc
        self._ser = ser

    def read(self, max_bytes: int = 4096) -> bytes:
        ser = self._ser
        if ser is None:
            raise TransportError("port is closed")
        try:
            first = ser.read(1)  # blocks up to read_timeout_s
            if not first:
                return b""
            waiting = ser.in_waiting
            return first + (ser.read(min(waiting, max_bytes - 1)) if waiting else b"")
        except (serial.SerialException, OSError, TypeError, ValueError) as exc:
            # TypeError/ValueError: pyserial internals after the fd went away mid-call
            raise TransportError(f"read from {self.port} failed: {exc}") from exc

    def write(self, data: bytes) -> None:
        with self._wlock:
            ser = self._ser
            if ser is None:
                raise TransportError("port is closed")
            try:
                ser.write(data)
                ser.flush()
            except (serial.SerialException, OSError, TypeError, ValueError) as exc:
                raise TransportError(f"write to {self.port} failed: {exc}") from exc

    def close(self) -> None:
        with self._wlock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass
