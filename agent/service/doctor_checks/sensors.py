"""Serial sensors: open the port and decode at least one valid frame with the sensor's own driver.

The same driver classes as the agent decode the line (``firmware_bridge.drivers``), after the same
startup bytes; passive-mode sensors are polled; the MCU is asked for its hello. A GPS (``nmea``)
is read on until it gives a valid RMC, and what it says about the system clock is left in the
context for the clock check. A port the running agent holds (exclusive lock) is judged by the
agent's own health row in the database instead.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.service.doctor_checks.base import Check, Context, Result, fail, ok, skip

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from firmware_bridge.config import SensorConfig
    from firmware_bridge.drivers.base import Driver
    from firmware_bridge.events import Message
    from firmware_bridge.gpsclock import GpsClock
    from firmware_bridge.transport import SerialTransport


def sensor_checks(cfg: AgentConfig, ctx: Context) -> list[Check]:
    if not any(s.driver_class.gps_clock and s.enabled for s in cfg.sensors):
        ctx.gps_done.set()
    if not cfg.sensors:
        return [Check("sensor", "sensor", lambda: skip("no serial sensors configured"), ctx.timeout_s)]
    return [
        Check(f"sensor:{s.name}", "sensor", partial(_guarded, s, cfg, ctx), ctx.timeout_s + 2)
        for s in cfg.sensors
    ]


def _guarded(s: SensorConfig, cfg: AgentConfig, ctx: Context) -> Result:
    try:
        return check_sensor(s, cfg, ctx)
    finally:
        if s.driver_class.gps_clock:
            ctx.gps_done.set()


def _summary(msg: Any) -> str:
    ms = [m for m in msg.measurements if not m.metric.startswith("count_")][:3]
    vals = ", ".join(f"{m.metric}={m.value:g}{(' ' + m.unit) if m.unit else ''}" for m in ms)
    return f"{msg.kind}" + (f" ({vals})" if vals else "")


def check_sensor(s: SensorConfig, cfg: AgentConfig, ctx: Context) -> Result:
    from firmware_bridge.drivers import make_driver
    from firmware_bridge.gpsclock import GpsClock
    from firmware_bridge.transport import SerialTransport, TransportError

    if not s.enabled:
        return skip("disabled (enabled = false)")
    t = SerialTransport(
        s.port,
        s.effective_baud,
        bytesize=s.bytesize,
        parity=s.parity,
        stopbits=s.stopbits,
        exclusive=s.exclusive,
        read_timeout_s=0.1,
    )
    try:
        t.open()
    except TransportError as exc:
        return _not_opened(s, cfg, str(exc))
    drv = make_driver(s.driver, s)
    clock = GpsClock(tolerance_s=getattr(s, "clock_tolerance_s", 2.0)) if drv.gps_clock else None
    got = _Read(deadline=time.monotonic() + ctx.timeout_s)
    try:
        _read_first_frame(t, drv, clock, s, got)
    except TransportError as exc:
        return fail(f"{s.port}: {exc}", "the device vanished while being read: check the cable and power")
    finally:
        t.close()
        if clock is not None:
            ctx.gps = {**clock.state(), "sensor": s.name, "tolerance_s": clock.tolerance_s}
    return _judge(s, got, ctx.timeout_s)


def _not_opened(s: SensorConfig, cfg: AgentConfig, text: str) -> Result:
    """The port did not open: held by the agent (judge by its health row), missing, or not allowed."""
    if "lock" in text.lower() or "busy" in text.lower():
        return _from_agent_health(s, cfg, text)
    if "does not exist" in text:
        return fail(
            f"{s.port} does not exist",
            "plug the sensor in; `ls -l /dev/serial/by-id /dev/edge-agent` shows "
            "the ports this unit sees; fix sensors[].port",
        )
    return fail(text, "check the port path and that the agent's user is in the 'dialout' group")


@dataclass
class _Read:
    """What reading a port until its first frame got: the frame, the bytes and the line errors."""

    deadline: float
    message: Message | None = None
    bytes_in: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def _read_first_frame(
    t: SerialTransport, drv: Driver, clock: GpsClock | None, s: SensorConfig, got: _Read
) -> None:
    """Send the startup bytes and the hello request, then read (polling passive sensors) until a
    frame other than an answer arrives (and for a GPS, a valid time), or the deadline passes."""
    from firmware_bridge.events import DecodeError

    next_poll = 0.0
    for data in drv.startup_commands():
        t.write(data)
    hello = drv.hello_request()
    if hello is not None:
        t.write(hello)
    while time.monotonic() < got.deadline:
        poll = drv.poll_command()
        if poll is not None and time.monotonic() >= next_poll:
            t.write(poll)
            next_poll = time.monotonic() + min(getattr(s, "poll_interval_s", 1.0), 1.0)
        data = t.read()
        received = time.time()
        got.bytes_in += len(data)
        for ev in drv.feed(data) if data else []:
            if isinstance(ev, DecodeError):
                got.errors[ev.reason] = got.errors.get(ev.reason, 0) + 1
                continue
            if clock is not None:
                clock.update(ev, received)
            if got.message is None or (got.message.kind == "answer" and ev.kind != "answer"):
                got.message = ev
        if got.message is not None and got.message.kind != "answer":
            if clock is None or clock.state()["gps_time"] is not None:
                break


def _judge(s: SensorConfig, got: _Read, timeout_s: float) -> Result:
    """ok with the first frame's values, or fail saying whether no bytes or no valid frame came."""
    baud = s.effective_baud
    took = timeout_s - max(0.0, got.deadline - time.monotonic())
    bytes_in, errors, msg = got.bytes_in, got.errors, got.message
    errs = ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
    if msg is None:
        if bytes_in == 0:
            return fail(
                f"{s.port}: no bytes within {timeout_s:g} s ({s.driver}, {baud} baud)",
                "nothing arrives: check power and wiring (sensor TX to adapter RX), and for passive sensors "
                "that commands reach it (adapter TX to sensor RX)",
                bytes=0,
            )
        return fail(
            f"{s.port}: {bytes_in} bytes but no valid {s.driver} frame within {timeout_s:g} s ({errs or 'no frames'})",
            f"wrong baud rate (using {baud}) or wrong driver for this device; or a noisy line (check ground and cable length)",
            bytes=bytes_in,
            errors=errors,
        )
    res = ok(
        f"{s.driver} on {s.port}: {_summary(msg)} after {took:.1f} s"
        + (f"; line errors: {errs}" if errs else ""),
        driver=s.driver,
        message=msg.kind,
        bytes=bytes_in,
        errors=errors,
    )
    if msg.kind == "hello" and "firmware" in msg.fields:
        res.detail += f"; firmware {msg.fields.get('firmware', '?')}"
    return res


def _from_agent_health(s: SensorConfig, cfg: AgentConfig, why: str) -> Result:
    """The port is locked (the running agent holds it): judge the sensor by the agent's health row."""
    hint = (
        "another program holds the port; if it is not edge-agent, stop it. To test the port itself: "
        "systemctl stop edge-agent, run doctor, systemctl start edge-agent"
    )
    db = Path(cfg.storage.path)
    if not db.is_file():
        return fail(f"{s.port} is locked by another program ({why})", hint)
    try:
        conn = sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True, timeout=2)
        try:
            row = conn.execute(
                "SELECT connected, last_reading_ts, updated_ts, last_error FROM sensor_health WHERE sensor = ?",
                (s.name,),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return fail(
            f"{s.port} is locked by another program, and the agent's database says nothing ({exc})", hint
        )
    if row is None:
        return fail(f"{s.port} is locked by another program and the agent has no health record for it", hint)
    connected, last_ts, _, last_error = row
    age = None
    if last_ts:
        age = time.time() - dt.datetime.fromisoformat(last_ts.replace("Z", "+00:00")).timestamp()
    if connected and age is not None and age <= max(60.0, 2 * s.stale_after_s):
        return ok(f"held by the running agent, which read it {age:.0f} s ago", via="agent")
    return fail(
        f"held by the running agent, which has no recent reading (last {last_ts or 'never'}; {last_error or 'no error'})",
        "check the sensor's power and wiring; `journalctl -u edge-agent` shows its errors",
    )
