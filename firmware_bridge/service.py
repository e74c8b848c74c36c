"""The sensor service: one thread per serial sensor, readings to the database writer.

Each thread opens its port (backoff while it is missing), sends the driver's startup and poll
bytes, feeds what it reads to the driver, turns messages into ``readings`` rows
(``writer.submit_rows``), keeps health counters, and reopens the port when it errors, vanishes
or goes quiet for ``stale_after_s``. No exception from a driver or the port leaves the thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from agent.backoff import Backoff, spread
from agent.timefmt import iso_utc
from firmware_bridge.commands import CommandClient, CommandResult
from firmware_bridge.config import SensorConfig
from firmware_bridge.drivers import make_driver
from firmware_bridge.events import Q_CLOCK_UNTRUSTED, DecodeError, Measurement, Message
from firmware_bridge.gpsclock import GpsClock
from firmware_bridge.store import reading_rows, upsert_health, write_settings
from firmware_bridge.summary import DEFAULT_SETTINGS
from firmware_bridge.transport import SerialTransport, TransportError

log = logging.getLogger(__name__)
HEALTH_WRITE_S = 10.0


class SensorWorker:
    """One sensor's thread. ``health()`` and ``last_progress`` may be read from any thread."""

    def __init__(
        self,
        cfg: SensorConfig,
        writer: Any,
        clock: GpsClock | None = None,
        health_write_s: float = HEALTH_WRITE_S,
    ) -> None:
        self.cfg = cfg
        self.writer = writer
        self.clock = clock
        self.health_write_s = health_write_s
        self.transport = SerialTransport(
            cfg.port,
            cfg.effective_baud,
            bytesize=cfg.bytesize,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            exclusive=cfg.exclusive,
        )
        self.driver = make_driver(cfg.driver, cfg)
        self.commands = (
            CommandClient(
                self.transport.write,
                timeout_s=getattr(cfg, "command_timeout_s", 0.5),
                retries=getattr(cfg, "command_retries", 3),
            )
            if type(self.driver).commands
            else None
        )
        self.gps_clock = type(self.driver).gps_clock  # its messages set the unit's GPS clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_progress = time.monotonic()
        self._h: dict[str, Any] = {
            "connected": False,
            "last_reading_ts": None,
            "frames_ok": 0,
            "frames_bad": 0,
            "resyncs": 0,
            "reconnects": 0,
            "last_error": None,
            "bytes_read": 0,
            "bytes_discarded": 0,
            "rows_dropped": 0,
            "errors_by_reason": {},
            "port_resolved": None,
        }
        self._ever_connected = False
        # called with (messages, received wall time) on this thread after each read (radar fusion)
        self.listeners: list[Any] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sensor-{self.cfg.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("sensor %s: thread did not stop within %.1f s", self.cfg.name, timeout_s)
        self.transport.close()

    def health(self) -> dict[str, Any]:
        h = dict(self._h)
        h["errors_by_reason"] = dict(h["errors_by_reason"])
        if self.commands:
            h["commands"] = dict(self.commands.stats)
        h.update(self.driver.health_extra())
        return h

    def command(self, name: str, **fields: Any) -> CommandResult:
        if self.commands is None:
            raise ValueError(f"sensor {self.cfg.name} ({self.cfg.driver}) takes no commands")
        if not self.transport.is_open:
            return CommandResult(name, 0, "error", 0, "not connected")
        return self.commands.request(name, **fields)

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        # reconnect_initial_s doubling to reconnect_max_s, +-20 %
        backoff = Backoff(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, jitter=spread(0.2))
        next_health = 0.0
        while not self._stop.is_set():
            self.last_progress = now = time.monotonic()
            if now >= next_health:
                self._write_health()
                next_health = now + self.health_write_s
            try:
                if not self.transport.is_open:
                    self._connect()
                    backoff.reset()
                self._pump()
            except TransportError as exc:
                self._disconnected(str(exc))
                backoff.wait(self._stop)
            except Exception as exc:  # a bug must not kill the sensor thread for good
                log.exception("sensor %s: unexpected error", self.cfg.name)
                self._disconnected(f"internal error: {exc!r}")
                backoff.wait(self._stop)
        self.transport.close()
        self._h["connected"] = False
        self._write_health()

    def _connect(self) -> None:
        self.transport.open()
        self.driver = make_driver(self.cfg.driver, self.cfg)  # drop any half frame of the old link
        if self._ever_connected:
            self._h["reconnects"] += 1
        self._ever_connected = True
        self._h["connected"] = True
        self._h["port_resolved"] = self.transport.resolved
        self._last_valid = time.monotonic()
        self._next_poll = time.monotonic()
        log.info("sensor %s: connected to %s (%s)", self.cfg.name, self.cfg.port, self.transport.resolved)
        for data in self.driver.startup_commands():
            self.transport.write(data)
        if self.commands is not None:
            threading.Thread(
                target=self._command_setup, name=f"sensor-{self.cfg.name}-setup", daemon=True
            ).start()

    def _command_setup(self) -> None:
        """The driver's setup requests (MCU: hello, set_interval); answers arrive through the sensor thread."""
        assert self.commands is not None
        for name, fields in self.driver.setup_requests():
            r = self.commands.request(name, **fields)
            if not r.ok and name != "request_hello":
                self._h["last_error"] = f"{name}: {r.status} {r.reason or ''}".strip()

    def _disconnected(self, why: str) -> None:
        if self._h["connected"]:
            log.warning("sensor %s: disconnected: %s", self.cfg.name, why)
        self._h["connected"] = False
        self._h["last_error"] = why
        self.transport.close()

    def _pump(self) -> None:
        """One read from the port and what follows from it."""
        now = time.monotonic()
        poll = self.driver.poll_command()
        if poll is not None and now >= self._next_poll:
            self.transport.write(poll)
            self._next_poll = now + getattr(self.cfg, "poll_interval_s", 1.0)
        data = self.transport.read()
        received = time.time()
        if data:
            self._h["bytes_read"] += len(data)
            self._handle(self.driver.feed(data), received)
        if time.monotonic() - self._last_valid > self.cfg.stale_after_s:
            raise TransportError(f"no valid frame for {self.cfg.stale_after_s:.0f} s")

    def _handle(self, events: list, received: float) -> None:
        msgs: list[Message] = []
        for ev in events:
            if isinstance(ev, DecodeError):
                reasons = self._h["errors_by_reason"]
                reasons[ev.reason] = reasons.get(ev.reason, 0) + 1
                self._h["bytes_discarded"] += ev.length
                if ev.is_resync:
                    self._h["resyncs"] += 1
                else:
                    self._h["frames_bad"] += 1
                continue
            self._h["frames_ok"] += 1
            self._last_valid = time.monotonic()
            if self.commands is not None:
                self.commands.on_message(ev)
            if self.clock is not None and self.gps_clock:
                offset = self.clock.update(ev, received)
                if offset is not None:
                    ev.measurements.append(Measurement("clock_offset_s", round(offset, 3), "s"))
            msgs.append(ev)
        extra = 0
        if self.clock is not None and not self.gps_clock and self.clock.state()["trusted"] is False:
            extra = Q_CLOCK_UNTRUSTED
        for fn in self.listeners:
            try:
                fn(msgs, received)
            except Exception:  # a listener's bug must not stop the sensor
                log.exception("sensor %s: listener failed", self.cfg.name)
        rows = reading_rows(self.cfg.name, msgs, received, extra)
        if rows:
            self._h["last_reading_ts"] = iso_utc(received)
            if not self.writer.submit_rows("readings", rows):
                self._h["rows_dropped"] += len(rows)

    def _write_health(self) -> None:
        h, cfg = self.health(), self.cfg
        self.writer.submit_fn(
            lambda conn: upsert_health(conn, cfg.name, cfg.driver, cfg.port, h, time.time()),
            kind="sensor_health",
        )


class SensorService:
    """All configured serial sensors. ``start()`` returns at once; ports open in their threads."""

    def __init__(self, sensors: list[SensorConfig], writer: Any) -> None:
        self.sensors = [s for s in sensors if s.enabled]
        gps = [s for s in self.sensors if s.driver_class.gps_clock]
        self.has_gps_clock = bool(gps)
        tol = min((s.summary_settings().get("clock_tolerance_s", 2.0) for s in gps), default=2.0)
        self.clock = GpsClock(tolerance_s=tol)
        self.workers = {s.name: SensorWorker(s, writer, self.clock) for s in self.sensors}
        settings = {s.name: {**DEFAULT_SETTINGS, **s.summary_settings()} for s in self.sensors}
        # recorded with the readings, so a summary (and a re-run of one) is computed from the database

        def record(conn: sqlite3.Connection) -> None:
            for name, values in settings.items():
                write_settings(conn, name, values, time.time())

        if settings:
            writer.submit_fn(record, kind="sensor_settings", block=True)

    def start(self) -> None:
        for w in self.workers.values():
            w.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        for w in self.workers.values():
            w._stop.set()
        for w in self.workers.values():
            w.stop(max(0.1, deadline - time.monotonic()))

    def health(self) -> dict[str, dict[str, Any]]:
        return {name: w.health() for name, w in self.workers.items()}

    def add_listener(self, sensor: str, fn: Any) -> None:
        """Call ``fn(messages, received_ts)`` on ``sensor``'s thread with every batch it decodes."""
        if sensor not in self.workers:
            raise KeyError(sensor)
        self.workers[sensor].listeners.append(fn)

    @property
    def last_progress(self) -> dict[str, float]:
        """Monotonic time of each sensor thread's last loop iteration (for the watchdog)."""
        return {name: w.last_progress for name, w in self.workers.items()}

    def gps_clock(self) -> dict[str, Any]:
        """``{"fix", "fix_quality", "satellites", "gps_time", "offset_s", "age_s", "trusted"}``."""
        return self.clock.state()

    def command(self, sensor: str, name: str, **fields: Any) -> CommandResult:
        """Send an MCU command (set_interval, set_relay, reboot, request_hello); blocks for the answer."""
        if sensor not in self.workers:
            raise KeyError(f"no enabled sensor named {sensor!r}")
        return self.workers[sensor].command(name, **fields)
