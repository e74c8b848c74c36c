"""The time a file camera's frames carry (``Frame.ts``): what tracking, speeds, crossings and bins run on.

- With the camera's ``start_time``: ``start_time`` + the position in the file (+ the length of the
  passes already played, for a looping file), so a recorded survey lands in the right bins.
- Without it, paced (``realtime = true``, the default): the wall clock as each frame is read, which
  is the file's own pace.
- Without it, read once as fast as inference takes them (``realtime = false``, ``loop = false``: the
  analysis of a recording): the wall clock when the file was opened + the position in it. Frames
  then come at the machine's speed, not the file's, and a wall-clock stamp would give the tracker
  gaps that depend on how fast this run happened to decode (the counts of one clip varied by up to
  5 a line from run to run). The stamps run ahead of the clock by at most the file's length. A
  reopen after a failure starts again from the wall clock, never before the last stamp.
- Without it, looping and unpaced: the wall clock, as a live camera (a media clock would run ever
  further ahead of the clock, pass after pass).
"""

from __future__ import annotations

from datetime import datetime, timezone


class MediaClock:
    def __init__(self, start_time: datetime | None, realtime: bool, loop: bool = False) -> None:
        if start_time is not None and start_time.tzinfo is None:
            start_time = start_time.replace(tzinfo=timezone.utc)
        self.t0: float | None = start_time.timestamp() if start_time is not None else None
        self.wall = realtime or loop  # without start_time: stamped with the wall clock
        self.base = 0.0  # media seconds of the passes already played (start_time only)
        self.end = 0.0  # media time just after the last frame read
        self._pass_t0: float | None = None  # a one-pass unpaced file without start_time: its anchor
        self._last = float("-inf")

    def stamp(self, pos: float, frame_dt: float, wall: float) -> float:
        """The time of the frame at ``pos`` seconds into this pass, read at ``wall``."""
        self.end = self.base + pos + frame_dt
        if self.t0 is not None:
            ts = self.t0 + self.base + pos
        elif self.wall:
            ts = wall
        else:
            if self._pass_t0 is None:
                self._pass_t0 = max(wall, self._last + frame_dt) - pos
            ts = self._pass_t0 + pos
        self._last = ts
        return ts

    def begin_pass(self) -> None:
        """Reading starts from the file's beginning (an open or a reopen)."""
        self._pass_t0 = None

    def next_pass(self) -> None:
        """A looping file starts again (by seek or reopen): the media clock continues after it."""
        self.base = self.end
        self._pass_t0 = None
