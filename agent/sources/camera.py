"""A camera: its capture thread, reconnect with backoff and jitter, health, and its frame slot.

The capture thread reads continuously (live sources must be drained, or their buffers go stale),
and offers a frame to the slot at most ``detect_fps`` times a second. Files are paced at their own
frame rate (``realtime``) or read as fast as inference takes them. When opening or reading fails,
the camera waits ``reconnect_initial_s`` doubling up to ``reconnect_max_s`` (+-25 % jitter, so a
fleet does not reconnect in lockstep) and tries again, forever; it never stops the agent or the
other cameras. Its state is one of ``starting``, ``up``, ``reconnecting``, ``down`` (three or more
failed attempts in a row, still retrying), ``ended`` (a file that does not loop) or ``stopped``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from agent.errors import SourceError
from agent.sources.readers import Reader, guess_kind, open_reader, redact_url
from agent.sources.slot import FrameSlot
from agent.types import Frame

if TYPE_CHECKING:
    from agent.config import CameraConfig

log = logging.getLogger(__name__)

DOWN_AFTER_FAILURES = 3


class CameraSource:
    def __init__(self, cfg: CameraConfig, slot: FrameSlot | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.kind = guess_kind(cfg.source) if cfg.kind == "auto" else cfg.kind
        self.slot = slot or FrameSlot(cfg.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "starting"
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.frames_read = 0
        self.frames_offered = 0
        self.reconnects = 0
        self.failures_in_row = 0
        self.epoch = 0
        self.last_frame_ts: float | None = None
        self.last_progress = time.monotonic()
        self.next_retry_s: float | None = None
        self.source_fps: float | None = None
        self.resolution: tuple[int, int] | None = None
        self._ended = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> CameraSource:
        self._thread = threading.Thread(target=self._run, name=f"camera:{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.slot.close()
        if self._thread:
            self._thread.join(timeout_s)
        self.state = "stopped"

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait_ended(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": redact_url(self.cfg.source),
            "state": self.state,
            "last_error": self.last_error,
            "last_error_ts": self.last_error_ts,
            "last_frame_ts": self.last_frame_ts,
            "frames_read": self.frames_read,
            "frames_offered": self.frames_offered,
            "frames_replaced": self.slot.replaced,
            "reconnects": self.reconnects,
            "next_retry_s": self.next_retry_s,
            "source_fps": self.source_fps,
            "resolution": list(self.resolution) if self.resolution else None,
        }

    def progress(self) -> float:
        """Monotonic time of the capture loop's last sign of life (also while it waits to retry)."""
        return self.last_progress

    # -- the thread ------------------------------------------------------------------------------
    def _fail(self, msg: str) -> None:
        self.failures_in_row += 1
        self.last_error = msg
        self.last_error_ts = time.time()
        self.state = "down" if self.failures_in_row >= DOWN_AFTER_FAILURES else "reconnecting"

    def _backoff(self) -> float:
        base = min(
            self.cfg.reconnect_max_s, self.cfg.reconnect_initial_s * (2 ** max(0, self.failures_in_row - 1))
        )
        return base * random.uniform(0.75, 1.25)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            self.last_progress = time.monotonic()
            left = end - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.5))

    def _run(self) -> None:
        looped = False
        while not self._stop.is_set():
            try:
                reader = open_reader(
                    self.cfg.source,
                    self.kind,
                    width=self.cfg.width,
                    height=self.cfg.height,
                    fourcc=self.cfg.fourcc,
                    timeout_s=self.cfg.read_timeout_s,
                )
            except SourceError as exc:
                if getattr(exc, "permanent", False):  # e.g. GStreamer on an OpenCV without it: one error
                    self._fail(str(exc))
                    self.state = "down"
                    self.next_retry_s = None
                    log.error("camera %s: %s (not retried)", self.name, exc)
                    return
                self._fail(str(exc.message))
                delay = self._backoff()
                self.next_retry_s = round(delay, 2)
                log.warning("camera %s: %s; retrying in %.1f s", self.name, exc.message, delay)
                self._sleep(delay)
                continue
            except Exception as exc:  # OpenCV can raise cv2.error on odd inputs
                self._fail(f"cannot open {redact_url(self.cfg.source)}: {exc}")
                self._sleep(self._backoff())
                continue
            self.epoch += 1
            if self.epoch > 1 and not looped:
                self.reconnects += 1
            self.next_retry_s = None
            self.source_fps = reader.fps
            outcome = "failed"
            try:
                outcome = self._capture(reader)
            except SourceError as exc:
                self._fail(str(exc.message))
                log.warning("camera %s: %s", self.name, exc.message)
            except Exception as exc:  # never let one camera take the agent down
                self._fail(f"capture error: {exc}")
                log.exception("camera %s: capture error", self.name)
            finally:
                reader.close()
            looped = outcome == "loop"
            if outcome == "ended":
                self.state = "ended"
                self._ended.set()
                log.info("camera %s: end of %s", self.name, self.cfg.source)
                return
            if outcome in ("loop", "stopped"):
                continue
            if not self._stop.is_set():
                delay = self._backoff()
                self.next_retry_s = round(delay, 2)
                self._sleep(delay)

    def _capture(self, reader: Reader) -> str:
        """Read until stop, failure or end: returns "stopped", "ended" (a file/folder that does not
        loop), or "loop" (reopen from the start); raises SourceError on failure."""
        cfg = self.cfg
        live = reader.live
        period = 1.0 / cfg.detect_fps
        paced = (not live) and cfg.realtime
        src_fps = reader.fps or 25.0
        frame_dt = 1.0 / src_fps
        # files: choose frames by media time so results do not depend on decode speed
        select_every = 1 if (live or cfg.detect_fps >= src_fps) else max(1, round(src_fps / cfg.detect_fps))
        index = 0
        next_offer = 0.0
        t0 = time.monotonic()
        last_frame_mono = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            self.last_progress = now
            if not live and index % select_every != 0:
                ok = reader.grab()
                if not ok:
                    return "loop" if cfg.loop else "ended"
                index += 1
                if paced:
                    self._pace(t0, index * frame_dt)
                continue
            img = reader.read()
            if img is None:  # end of file/folder
                return "loop" if cfg.loop else "ended"
            now = time.monotonic()
            self.last_progress = now
            self.frames_read += 1
            self.last_frame_ts = time.time()
            last_frame_mono = now
            if self.failures_in_row:
                log.info("camera %s: up again after %d failed attempt(s)", self.name, self.failures_in_row)
            self.failures_in_row = 0
            self.state = "up"
            if self.resolution is None or self.frames_read == 1:
                self.resolution = (int(img.shape[1]), int(img.shape[0]))
            frame = Frame(
                camera=self.name,
                index=index,
                ts=self.last_frame_ts,
                mono=now,
                image=img,
                pos_s=(index * frame_dt if not live else None),
                epoch=self.epoch,
            )
            index += 1
            if live:
                if now >= next_offer:
                    next_offer = max(next_offer + period, now - period)
                    self.slot.put(frame)
                    self.frames_offered += 1
            else:
                if not self.slot.put(frame, block=not cfg.realtime, stop=self._stop):
                    return "stopped"
                self.frames_offered += 1
                if paced:
                    self._pace(t0, index * frame_dt)
            if live and now - last_frame_mono > cfg.read_timeout_s:
                raise SourceError(f"{redact_url(cfg.source)}: no frame for {cfg.read_timeout_s:.0f} s")
        return "stopped"

    def _pace(self, t0: float, media_s: float) -> None:
        delay = t0 + media_s - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
