"""systemd's readiness and watchdog protocol (sd_notify), without libsystemd.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) to a
``Type=notify`` service; the service sends newline-separated ``KEY=value`` datagrams to it:
``READY=1`` once it works, ``STATUS=...`` (shown by ``systemctl status``), ``WATCHDOG=1`` at least
once per ``WatchdogSec=`` and ``STOPPING=1`` when it shuts down. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a no-op, so the agent runs the same in a terminal.

:class:`Watchdog` pings only while every critical thread made progress recently. A hung camera,
inference, database-writer or MQTT thread therefore lets the watchdog lapse, and systemd kills
and restarts the agent (``Restart=on-failure`` covers watchdog timeouts).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Probe = Callable[[], "float | None"]

_lock = threading.Lock()
_last_status: str | None = None  # the last STATUS= the agent itself set (restored after a stall clears)
_warned = False


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def notify(**fields: object) -> bool:
    """Send ``KEY=value`` fields to ``$NOTIFY_SOCKET``; return True when a datagram was sent.

    Keys are upper-cased (``notify(ready=1, status="ok")`` sends ``READY=1\\nSTATUS=ok``).
    Never raises: a missing or broken socket is logged (once) and ignored, because the agent must
    keep running even when the service manager cannot be told about it.
    """
    global _warned
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not fields:
        return False
    lines = []
    for key, value in fields.items():
        text = str(value).replace("\n", " ")
        lines.append(f"{key.upper()}={text}")
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, _address(target))
        return True
    except OSError as exc:
        if not _warned:
            _warned = True
            log.warning("cannot notify the service manager at NOTIFY_SOCKET=%s: %s", target, exc)
        return False


def status(text: str) -> bool:
    """Set the one-line status shown by ``systemctl status edge-agent``."""
    global _last_status
    with _lock:
        _last_status = text
    return notify(STATUS=text)


def ready(status_text: str | None = None) -> bool:
    """Tell systemd the agent is up (call once the pipeline runs), optionally with a status line."""
    global _last_status
    if status_text is None:
        return notify(READY=1)
    with _lock:
        _last_status = status_text
    return notify(READY=1, STATUS=status_text)


def stopping(status_text: str | None = None) -> bool:
    """Tell systemd the agent is shutting down (before the pipeline is stopped)."""
    if status_text is None:
        return notify(STOPPING=1)
    return notify(STOPPING=1, STATUS=status_text)


def watchdog() -> bool:
    """Send one ``WATCHDOG=1`` keep-alive. Prefer :class:`Watchdog`, which checks the threads first."""
    return notify(WATCHDOG=1)


def extend_timeout(seconds: float) -> bool:
    """Ask for ``seconds`` more before systemd gives up on a start or stop (slow model pull, DB check)."""
    return notify(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))


def watchdog_interval() -> float | None:
    """The watchdog timeout systemd expects (``$WATCHDOG_USEC``) in seconds, or None when not enabled.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; in any other
    process (a child, a test runner) this returns None.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1_000_000 if value > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` only while every critical thread shows recent progress.

    Args:
        probes: name -> function returning the ``time.monotonic()`` of that thread's last progress
            (``None`` means "no progress yet" and counts from when the probe was added).
        interval_s: the watchdog timeout in seconds; default ``$WATCHDOG_USEC`` (honouring
            ``$WATCHDOG_PID``). Pings are sent every ``interval_s / 2``. With no interval the
            watchdog does nothing (``start()`` returns False).
        stall_s: a thread whose last progress is older than this is stalled (default: interval_s).

    A thread counts as alive when it loops, not only when it has data: a camera waiting to
    reconnect, or inference waiting on an empty queue, must still record progress.
    """

    def __init__(
        self,
        probes: dict[str, Probe] | None = None,
        interval_s: float | None = None,
        stall_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s if interval_s is not None else watchdog_interval()
        if self.interval_s is not None and self.interval_s <= 0:
            raise ValueError(f"watchdog interval must be > 0 seconds, got {self.interval_s}")
        self.stall_s = stall_s if stall_s is not None else self.interval_s
        self._clock = clock
        self._probes: dict[str, tuple[Probe, float]] = {}
        self._plock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stalled: list[str] = []
        self.pings = 0
        for name, fn in (probes or {}).items():
            self.add_probe(name, fn)

    # -- probes ------------------------------------------------------------------------------
    def add_probe(self, name: str, fn: Probe) -> None:
        """Watch another thread (e.g. a camera added at runtime)."""
        with self._plock:
            self._probes[name] = (fn, self._clock())

    def remove_probe(self, name: str) -> None:
        """Stop watching a thread (e.g. a camera that was disabled). Unknown names are ignored."""
        with self._plock:
            self._probes.pop(name, None)

    @property
    def probe_names(self) -> list[str]:
        with self._plock:
            return sorted(self._probes)

    def check(self) -> list[tuple[str, float | None]]:
        """Return ``(name, seconds since progress)`` for each stalled thread (age None: probe failed)."""
        now = self._clock()
        limit = self.stall_s if self.stall_s is not None else float("inf")
        with self._plock:
            items = list(self._probes.items())
        stalled: list[tuple[str, float | None]] = []
        for name, (fn, added) in sorted(items):
            try:
                last = fn()
            except Exception as exc:  # a broken probe must not kill the watchdog thread
                log.error("watchdog probe %r failed: %s", name, exc)
                stalled.append((name, None))
                continue
            age = now - (added if last is None else float(last))
            if age >= limit:
                stalled.append((name, age))
        return stalled

    # -- thread ------------------------------------------------------------------------------
    def tick(self) -> bool:
        """One round: ping when nothing is stalled, else report the stalled threads. Returns pinged."""
        stalled = self.check()
        names = [n for n, _ in stalled]
        if not stalled:
            if self._stalled:
                log.warning("watchdog: all threads make progress again")
                with _lock:
                    previous = _last_status
                notify(WATCHDOG=1, STATUS=previous or "running")
            else:
                notify(WATCHDOG=1)
            self._stalled = []
            self.pings += 1
            return True
        desc = ", ".join(
            f"{n} (no progress for {a:.0f}s)" if a is not None else f"{n} (probe failed)" for n, a in stalled
        )
        if names != self._stalled:
            log.error(
                "watchdog: stalled thread(s): %s; not pinging systemd, which restarts the agent "
                "after WatchdogSec unless they recover",
                desc,
            )
        self._stalled = names
        notify(STATUS=f"stalled: {desc}")
        return False

    def start(self) -> bool:
        """Start the ping thread; returns False (and does nothing) when no watchdog is configured."""
        if self.interval_s is None:
            log.debug("systemd watchdog not enabled (no WATCHDOG_USEC); not pinging")
            return False
        if self._thread is not None:
            return True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pinging (call before the pipeline's own shutdown, so a slow stop is not a stall)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        period = max(self.interval_s / 2, 0.01)  # type: ignore[operator]
        while True:
            try:
                self.tick()
            except Exception:  # pragma: no cover - defensive: keep the watchdog thread alive
                log.exception("watchdog tick failed")
            if self._stop.wait(period):
                return
