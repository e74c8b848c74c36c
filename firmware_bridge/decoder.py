"""The base of every stream decoder: a bounded buffer, absolute offsets, coalesced garbage.

A decoder is fed bytes in chunks of any size (one byte, one read, a whole capture) and returns
the events completed so far. Input is processed in slices of :data:`SLICE` bytes and a subclass
never keeps more than ``max_buffer`` bytes, so memory stays bounded whatever arrives on the line.
Bytes skipped while looking for the next frame are reported as one ``garbage`` error per stretch.
"""

from __future__ import annotations

from firmware_bridge.events import DecodeError, Event

SLICE = 2048
MAX_GARBAGE_RUN = 65536  # report a long garbage stretch in pieces so errors keep flowing


class StreamDecoder:
    """Subclasses implement :meth:`_parse`, which looks at ``self._buf`` and calls
    :meth:`_emit`, :meth:`_consume` and :meth:`_skip`; it returns when it needs more bytes."""

    max_buffer = 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # absolute stream offset of self._buf[0]
        self._out: list[Event] = []
        self._garbage_at = -1
        self._garbage_len = 0

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte to be parsed."""
        return self._base

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes; return the messages and errors they completed."""
        mv = memoryview(data)
        for i in range(0, len(mv), SLICE):
            self._buf += mv[i : i + SLICE]
            self._parse()
            if len(self._buf) > self.max_buffer:  # a subclass bug must not grow memory
                self._skip(len(self._buf) - self.max_buffer)
        out, self._out = self._out, []
        return out

    def flush(self) -> list[Event]:
        """End of stream: report what is left in the buffer as a truncated frame or garbage."""
        if self._buf:
            self._flush_garbage()
            self._error(self._leftover_reason(), len(self._buf))
            self._consume(len(self._buf))
        self._flush_garbage()
        out, self._out = self._out, []
        return out

    # -- for subclasses ----------------------------------------------------------------------
    def _parse(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _leftover_reason(self) -> str:
        return "truncated"

    def _emit(self, event: Event) -> None:
        self._flush_garbage()
        self._out.append(event)

    def _error(self, reason: str, length: int, detail: str = "") -> None:
        """Report the first ``length`` buffered bytes as a rejected frame (does not consume)."""
        self._emit(DecodeError(reason, self._base, length, detail))

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n

    def _skip(self, n: int) -> None:
        """Drop ``n`` bytes as garbage (coalesced into one error per stretch)."""
        if n <= 0:
            return
        if self._garbage_at < 0:
            self._garbage_at = self._base
        self._garbage_len += n
        self._consume(n)
        if self._garbage_len >= MAX_GARBAGE_RUN:
            self._flush_garbage()

    def _flush_garbage(self) -> None:
        if self._garbage_len:
            self._out.append(DecodeError("garbage", self._garbage_at, self._garbage_len))
            self._garbage_at, self._garbage_len = -1, 0
