"""What every driver is: a stream decoder plus the bytes it sends to its device.

A driver is one file in ``firmware_bridge/drivers/`` holding a :class:`Driver` subclass; it is
registered by one line in ``firmware_bridge/drivers/__init__.py``. The service feeds it the bytes
read from the port and writes the bytes it asks for (at connect, on each poll, for commands).
Drivers never touch the port themselves, so the same class decodes a live port, a capture file
(``edge-agent sensors decode``) and fuzz input.
"""

from __future__ import annotations

from typing import Any, ClassVar

from firmware_bridge.decoder import StreamDecoder


class Driver(StreamDecoder):
    """Base driver. ``options`` are the sensor's config (a SensorConfig) or None for defaults."""

    name: ClassVar[str] = ""
    default_baud: ClassVar[int] = 9600
    description: ClassVar[str] = ""

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.options = options

    def opt(self, key: str, default: Any) -> Any:
        """A config value, or ``default`` when decoding without a config or the key is unset."""
        v = getattr(self.options, key, None) if self.options is not None else None
        return default if v is None else v

    def startup_commands(self) -> list[bytes]:
        """Bytes to send right after the port opens (mode, units, ...)."""
        return []

    def poll_command(self) -> bytes | None:
        """Bytes to send every ``poll_interval_s`` (passive / query modes); None: the device pushes."""
        return None

    def sleep_command(self, sleep: bool) -> bytes | None:
        """Bytes that put the device to sleep (True) or wake it (False); None if unsupported."""
        return None
