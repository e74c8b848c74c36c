"""Whether the system clock can be trusted, judged against GPS time.

A valid RMC sentence carries the UTC date and time of a fix. ``offset_s = gps_time - system time
at reception``; since a receiver prints the sentence shortly after the fix (typically 0.1-0.9 s),
the offset is slightly negative on a good clock. The clock is trusted when ``|offset_s|`` is
within the tolerance and the fix is recent. On a unit that booted without NTP or RTC the
offset is hours or years, and the agent can say so (and a technician can set the clock).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from firmware_bridge.events import Message


class GpsClock:
    def __init__(self, tolerance_s: float = 2.0, max_age_s: float = 30.0) -> None:
        self.tolerance_s = tolerance_s
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._fix_quality: int | None = None
        self._satellites: int | None = None
        self._gps_time: str | None = None
        self._offset: float | None = None
        self._at: float | None = None  # monotonic time of the last valid RMC

    def update(self, msg: Message, received: float | None = None) -> float | None:
        """Feed an NMEA message; returns the clock offset when the message gave one."""
        received = time.time() if received is None else received
        with self._lock:
            if msg.kind == "gga":
                self._fix_quality = msg.fields.get("fix_quality")
                self._satellites = msg.fields.get("satellites")
                return None
            if msg.kind != "rmc" or not msg.fields.get("valid") or not msg.fields.get("utc"):
                return None
            gps = dt.datetime.fromisoformat(msg.fields["utc"].replace("Z", "+00:00")).timestamp()
            self._offset = gps - received
            self._gps_time = msg.fields["utc"]
            self._at = time.monotonic()
            return self._offset

    def state(self) -> dict[str, Any]:
        """``{"fix", "fix_quality", "satellites", "gps_time", "offset_s", "age_s", "trusted"}``.
        ``trusted`` is None while there is no recent valid fix (nothing to judge by)."""
        with self._lock:
            age = None if self._at is None else time.monotonic() - self._at
            recent = age is not None and age <= self.max_age_s
            fix = recent and (self._fix_quality is None or self._fix_quality > 0)
            trusted = None if not fix or self._offset is None else abs(self._offset) <= self.tolerance_s
            return {
                "fix": fix,
                "fix_quality": self._fix_quality,
                "satellites": self._satellites,
                "gps_time": self._gps_time,
                "offset_s": None if self._offset is None else round(self._offset, 3),
                "age_s": None if age is None else round(age, 1),
                "trusted": trusted,
            }
