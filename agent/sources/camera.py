"""A camera: its capture thread, reconnect with backoff and jitter, health, and its frame slot.

The capture thread reads continuously (live sources must be drained, or their buffers go stale),
and offers a frame to the slot at most ``detect_fps`` times a second. Files are paced at their own
frame rate (``realtime``) or read as fast as inference takes them; a looping file seeks back to its
start instead of reopening. When opening or reading fails, the camera waits ``reconnect_initial_s``
doubling up to ``reconnect_max_s`` (+-25 % jitter, so a fleet does not reconnect in lockstep) and
tries again, forever; it never stops the agent or the other cameras. A network camera whose host
does not answer at all is probed (TCP, RTSP ``OPTIONS``) every second instead, and reopened as soon
as it answers, so an outage costs only its own length.

A live source that gives no frame for ``read_timeout_s`` is stalled: the frame FFmpeg hands over
after such a gap (decoded from its buffers, not new) is dropped and the source is reopened.

Its state is one of ``starting``, ``up``, ``stalled`` (no frame for ``read_timeout_s``, about to
reopen), ``reconnecting``, ``down`` (three or more failed attempts in a row, still retrying),
``ended`` (a file that does not loop) or ``stopped``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.backoff import Backoff, spread
from agent.errors import SourceError
from agent.sources.mediaclock import MediaClock
from agent.sources.probes import redact_url
from agent.sources.readers import Reader, Unreachable, guess_kind, open_camera
from agent.sources.slot import FrameSlot
from agent.types import Frame

if TYPE_CHECKING:
    from agent.config import CameraConfig

log = logging.getLogger(__name__)

DOWN_AFTER_FAILURES = 3
PROBE_EVERY_S = 1.0  # while a network camera's host does not answer
#: frames a second sent to inference when a camera sets no detect_fps (live, or a file played in real time)
LIVE_DETECT_FPS = 5.0


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
        # the wait after the n-th failure in a row: reconnect_initial_s doubling to reconnect_max_s, +-25 %
        self.retry = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s, jitter=spread(0.25))
        self.epoch = 0
        self.last_frame_ts: float | None = None
        self.last_progress = time.monotonic()
        self._last_frame_mono: float | None = None
        self.stalls = 0
        self.next_retry_s: float | None = None
        self.source_fps: float | None = None
        self.resolution: tuple[int, int] | None = None
        self._ended = threading.Event()
        # the times a file's frames carry (mediaclock.py)
        self.clock = MediaClock(cfg.start_time, cfg.realtime, cfg.loop)
        # set by the inference stage: fits a frame to its model's input, called here on the frames
        # offered (not on skipped ones), so the inference thread only copies the result in
        self.prepare: Callable[[Any], Any] | None = None
        self.prepare_errors = 0

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

    def current_state(self) -> str:
        """``state``, or ``stalled`` while a live source that is up has given no frame for a read timeout."""
        st = self.state
        lf = self._last_frame_mono
        if st == "up" and lf is not None:
            if time.monotonic() - lf > self.cfg.read_timeout_s:
                return "stalled"
        return st

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": redact_url(self.cfg.source),
            "state": self.current_state(),
            "last_error": self.last_error,
            "last_error_ts": self.last_error_ts,
            "last_frame_ts": self.last_frame_ts,
            "frames_read": self.frames_read,
            "frames_offered": self.frames_offered,
            "frames_replaced": self.slot.replaced,
            "reconnects": self.reconnects,
            "stalls": self.stalls,
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
        return self.retry.delay_for(self.failures_in_row - 1)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            self.last_progress = time.monotonic()
            left = end - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.5))

    def _run(self) -> None:
        """Open, capture until the source fails or ends, wait, reopen; until stop (or a file's end)."""
        looped = False
        while not self._stop.is_set():
            try:
                reader = open_camera(self.cfg, self.kind)
            except SourceError as exc:
                if getattr(exc, "permanent", False):  # e.g. GStreamer on an OpenCV without it: one error
                    self._give_up(exc)
                    return
                self._open_failed(exc)
                continue
            except Exception as exc:  # OpenCV can raise cv2.error on odd inputs
                self._fail(f"cannot open {redact_url(self.cfg.source)}: {exc}")
                self._sleep(self._backoff())
                continue
            self._opened(reader, looped)
            outcome = self._capture_pass(reader)
            looped = outcome == "loop"
            if looped:
                self.clock.next_pass()
            if outcome == "ended":
                self._end()
                return
            if outcome in ("loop", "stopped"):
                continue
            if not self._stop.is_set():
                delay = self._backoff()
                self.next_retry_s = round(delay, 2)
                self._sleep(delay)

    def _give_up(self, exc: SourceError) -> None:
        """An error that retrying cannot help: the camera is down for good and its thread ends."""
        self._fail(str(exc))
        self.state = "down"
        self.next_retry_s = None
        log.error("camera %s: %s (not retried)", self.name, exc)

    def _open_failed(self, exc: SourceError) -> None:
        """Wait before the next open: a host that does not answer is probed again soon (cheap, outside
        OpenCV's lock); a host that answers but whose stream fails to open backs off."""
        self._fail(str(exc.message))
        if isinstance(exc, Unreachable):
            delay = min(self._backoff(), PROBE_EVERY_S * self.retry.rng.uniform(*self.retry.jitter))
        else:
            delay = self._backoff()
        self.next_retry_s = round(delay, 2)
        if self.failures_in_row <= DOWN_AFTER_FAILURES or self.failures_in_row % 60 == 0:
            log.warning(
                "camera %s: %s; retrying in %.1f s (attempt %d)",
                self.name,
                exc.message,
                delay,
                self.failures_in_row,
            )
        self._sleep(delay)

    def _opened(self, reader: Reader, looped: bool) -> None:
        """A new epoch: a reopen after a failure counts as a reconnect, a looping file's does not."""
        self.epoch += 1
        if self.epoch > 1 and not looped:
            self.reconnects += 1
        self.next_retry_s = None
        self.source_fps = reader.fps

    def _capture_pass(self, reader: Reader) -> str:
        """One pass of :meth:`_capture` over an open reader, which is closed after it; a failure is
        counted ("failed") and never leaves the thread."""
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
        return outcome

    def _end(self) -> None:
        self.state = "ended"
        self._ended.set()
        log.info("camera %s: end of %s", self.name, self.cfg.source)

    def _capture(self, reader: Reader) -> str:
        """Read until stop, failure or end: returns "stopped", "ended" (a file/folder that does not
        loop), or "loop" (reopen from the start); raises SourceError on failure."""
        if reader.live:
            return self._capture_live(reader)
        self._last_frame_mono = None
        return self._capture_file(reader)

    def _capture_live(self, reader: Reader) -> str:
        """A live source: every frame is read (its buffers must not go stale) and one offered each
        ``1 / detect_fps``; no frame for ``read_timeout_s`` is a stall (SourceError: reopen)."""
        cfg = self.cfg
        period = 1.0 / (cfg.detect_fps or LIVE_DETECT_FPS)
        index = 0
        next_offer = 0.0
        last_frame_mono = time.monotonic()  # the open counts as the last sign of a frame
        self._last_frame_mono = last_frame_mono
        while not self._stop.is_set():
            self.last_progress = time.monotonic()
            img = reader.read()
            if img is None:  # end of stream (a live reader raises SourceError instead)
                if self._rewound(reader, index):
                    index = 0
                    continue
                return "loop" if cfg.loop else "ended"
            now = time.monotonic()
            self.last_progress = now
            if now - last_frame_mono >= cfg.read_timeout_s:
                raise self._stalled(now - last_frame_mono)
            self.frames_read += 1
            self.last_frame_ts = time.time()  # health: when a frame last came (wall clock)
            last_frame_mono = now
            self._last_frame_mono = now
            if self.failures_in_row:
                self._up_again()
            self.state = "up"
            size = (int(img.shape[1]), int(img.shape[0]))
            if size != self.resolution:
                self._new_resolution(size)
            frame = Frame(
                camera=self.name, index=index, ts=self.last_frame_ts, mono=now, image=img, epoch=self.epoch
            )
            index += 1
            if now >= next_offer:
                next_offer = max(next_offer + period, now - period)
                self._prepare(frame)
                self.slot.put(frame)
                self.frames_offered += 1
        return "stopped"

    def _capture_file(self, reader: Reader) -> str:
        """A file or folder: frames chosen by media time (every n-th, so results do not depend on
        decode speed), paced at the file's own rate when ``realtime``, else as fast as inference
        takes them (the slot blocks); a looping file seeks back to its start at the end."""
        cfg = self.cfg
        paced = cfg.realtime
        frame_dt, select_every = self._file_steps(reader)
        index = 0
        t0 = time.monotonic()
        self.clock.begin_pass()
        while not self._stop.is_set():
            self.last_progress = time.monotonic()
            if index % select_every != 0:
                if reader.grab():
                    index += 1
                    if paced:
                        self._pace(t0, index * frame_dt)
                    continue
                img = None
            else:
                img = reader.read()
            if img is None:  # end of file/folder
                if self._rewound(reader, index):
                    index, t0 = 0, time.monotonic()
                    continue
                return "loop" if cfg.loop else "ended"
            now = time.monotonic()
            self.last_progress = now
            self.frames_read += 1
            pos = index * frame_dt
            self.last_frame_ts = time.time()  # health: when a frame last came (wall clock)
            stamp = self.clock.stamp(pos, frame_dt, self.last_frame_ts)
            if self.failures_in_row:
                self._up_again()
            self.state = "up"
            size = (int(img.shape[1]), int(img.shape[0]))
            if size != self.resolution:
                self._new_resolution(size)
            frame = Frame(
                camera=self.name, index=index, ts=stamp, mono=now, image=img, pos_s=pos, epoch=self.epoch
            )
            index += 1
            self._prepare(frame)
            if not self.slot.put(frame, block=not cfg.realtime, stop=self._stop):
                return "stopped"
            self.frames_offered += 1
            if paced:
                self._pace(t0, index * frame_dt)
        return "stopped"

    def _file_steps(self, reader: Reader) -> tuple[float, int]:
        """A file's frame duration, and which frames are offered (every n-th) at ``detect_fps``."""
        src_fps = reader.fps or 25.0
        detect_fps = self.cfg.detect_fps
        if detect_fps is None:  # a survey read as fast as it goes: every frame; played: as live
            detect_fps = src_fps if not self.cfg.realtime else LIVE_DETECT_FPS
        return 1.0 / src_fps, 1 if detect_fps >= src_fps else max(1, round(src_fps / detect_fps))

    def _rewound(self, reader: Reader, index: int) -> bool:
        """At the end of a looping file: seek back to its start (a new epoch); False: the pass ends."""
        if self.cfg.loop and index > 0 and reader.rewind():
            self._new_epoch()
            self.clock.next_pass()
            return True
        return False

    def _stalled(self, gap_s: float) -> SourceError:
        """FFmpeg hands over what its decoder still buffers when a read times out: this frame is old,
        whatever the clock says now. It is dropped and the source reopened."""
        self.stalls += 1
        return SourceError(
            f"{redact_url(self.cfg.source)}: stalled, no frame for {gap_s:.1f} s "
            f"(read_timeout_s = {self.cfg.read_timeout_s:g})",
            "the agent reopens the stream; check the camera and the network if it persists",
        )

    def _up_again(self) -> None:
        log.info("camera %s: up again after %d failed attempt(s)", self.name, self.failures_in_row)
        self.failures_in_row = 0

    def _new_resolution(self, size: tuple[int, int]) -> None:
        if self.resolution is not None:
            log.info("camera %s: resolution %dx%d -> %dx%d", self.name, *self.resolution, *size)
        self.resolution = size

    def _prepare(self, frame: Frame) -> None:
        """Fit the frame to the model's input here, where it was decoded (see ``Engine.prepare``).
        A failure only leaves it to the inference stage, which reports it there."""
        prepare = self.prepare
        if prepare is None or self.cfg.masks:  # masks go on the frame first, in the inference stage
            return
        try:
            frame.prepared = prepare(frame.image)
        except Exception:
            self.prepare_errors += 1

    def _new_epoch(self) -> None:
        """A looping file went back to its start (seek, not reopen): a new epoch, as a reopen gives."""
        self.epoch += 1

    def _pace(self, t0: float, media_s: float) -> None:
        delay = t0 + media_s - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
