"""What a decoder produces from a byte stream: messages (with measurements) and decode errors.

Every driver turns bytes into a list of :class:`Message` and :class:`DecodeError`. A message may
carry :class:`Measurement` values (one row each in the ``readings`` table); an error says why a
stretch of bytes was rejected and where it started in the stream (absolute byte offset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Quality flags of a measurement (bit mask, stored in readings.quality).
Q_OUT_OF_RANGE = 1  # the sensor or the decoder says the value is outside the sensor's range
Q_SENSOR_FAULT = 2  # the sensor reported a fault with this value
Q_WARMING_UP = 4  # taken while the sensor warms up (e.g. a PMS fan in its first 30 s)
Q_NO_FIX = 8  # GPS value without a valid fix
Q_STALE = 16  # the device says the value was not refreshed since its last report
Q_CLOCK_UNTRUSTED = 32  # the timestamp comes from a system clock that GPS says is off

QUALITY_NAMES = {
    Q_OUT_OF_RANGE: "out_of_range",
    Q_SENSOR_FAULT: "sensor_fault",
    Q_WARMING_UP: "warming_up",
    Q_NO_FIX: "no_fix",
    Q_STALE: "stale",
    Q_CLOCK_UNTRUSTED: "clock_untrusted",
}


def quality_names(mask: int) -> list[str]:
    """The names of the flags set in ``mask`` (``[]`` for a good value)."""
    return [name for bit, name in QUALITY_NAMES.items() if mask & bit]


@dataclass(slots=True)
class Measurement:
    metric: str
    value: float
    unit: str
    quality: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"metric": self.metric, "value": self.value, "unit": self.unit}
        if self.quality:
            d["quality"] = quality_names(self.quality)
        return d


@dataclass(slots=True)
class Message:
    """One decoded frame or sentence. ``kind`` is e.g. ``reading``, ``hello``, ``ack``, ``gga``."""

    kind: str
    offset: int
    fields: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind, "offset": self.offset, **self.fields}
        if self.measurements:
            d["measurements"] = [m.to_dict() for m in self.measurements]
        return d


@dataclass(slots=True)
class DecodeError:
    """Bytes the decoder rejected. ``reason``: garbage, bad_checksum, truncated, bad_length,
    bad_frame, too_long, ... ``offset``/``length``: where, in absolute stream bytes."""

    reason: str
    offset: int
    length: int
    detail: str = ""

    @property
    def is_resync(self) -> bool:
        """Bytes skipped between frames (not a frame that failed its checks)."""
        return self.reason == "garbage"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": "error",
            "reason": self.reason,
            "offset": self.offset,
            "length": self.length,
        }
        if self.detail:
            d["detail"] = self.detail
        return d


Event = Message | DecodeError
