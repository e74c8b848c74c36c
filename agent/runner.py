"""`edge-agent run`: the daemon's main loop, signals, and systemd notification."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from agent.config import AgentConfig
from agent.pipeline import Pipeline, _optional

log = logging.getLogger(__name__)


def run_agent(cfg: AgentConfig, *, duration_s: float | None = None, exit_on_end: bool = False,
              on_started: Any = None) -> Pipeline:
    """Run until SIGINT/SIGTERM (or ``duration_s``, or the end of every file source with
    ``exit_on_end``), then stop cleanly: nothing already accepted is lost."""
    stop = threading.Event()
    reasons: list[str] = []

    def _on_signal(signum, _frame):
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: already stopping", name)
            return
        reasons.append(name)
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    pipe = Pipeline(cfg)
    watchdog = None
    try:
        pipe.start()
        if on_started:
            on_started(pipe)
        watchdog = _SystemdLink.start(pipe)
        t_end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                reasons.append(f"duration {duration_s:g} s reached")
                break
            if exit_on_end and pipe.idle():
                reasons.append("all sources ended")
                break
            stop.wait(0.2)
    finally:
        log.info("stopping (%s)", ", ".join(reasons) or "error")
        if watchdog is not None:
            watchdog.stopping()
        pipe.stop()
        if watchdog is not None:
            watchdog.close()
        for s, h in old.items():
            signal.signal(s, h)
    return pipe


class _SystemdLink:
    """READY / STATUS / WATCHDOG / STOPPING to systemd (no-op when not started by systemd)."""

    def __init__(self, notify_mod: Any, pipe: Pipeline) -> None:
        self.n = notify_mod
        self.wd = notify_mod.Watchdog(pipe.progress_probes())
        self.wd.start()
        cams = len(pipe.cameras)
        accel = ", ".join(sorted({e.accelerator for e in pipe.engines.values()})) or "none"
        self.n.ready(f"running: {cams} camera(s), accelerator {accel}")

    @classmethod
    def start(cls, pipe: Pipeline) -> "_SystemdLink | None":
        mod = _optional("agent.service.notify", "Watchdog")
        if mod is None:
            return None
        import agent.service.notify as notify_mod

        return cls(notify_mod, pipe)

    def stopping(self) -> None:
        self.n.stopping()

    def close(self) -> None:
        self.wd.stop()
