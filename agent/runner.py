"""`edge-agent run`: the daemon's main loop, signals, and systemd notification."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import TYPE_CHECKING

from agent.config import AgentConfig
from agent.memory import Trimmer
from agent.pipeline import Pipeline

if TYPE_CHECKING:
    from agent.service.memtrace import MemTrace

log = logging.getLogger(__name__)


def run_agent(
    cfg: AgentConfig,
    *,
    duration_s: float | None = None,
    exit_on_end: bool | None = None,
    on_started: Callable[[Pipeline], object] | None = None,
    reload_config: Callable[[], AgentConfig] | None = None,
    restore_signals: bool = True,
) -> Pipeline:
    """Run until SIGINT/SIGTERM (or ``duration_s``, or the end of every file source), then stop
    cleanly: nothing already accepted is lost.

    ``exit_on_end``: ``True`` stops when every camera has ended (files that do not loop) and its
    frames are through the pipeline; ``None`` (default) does the same when no sensor is configured
    (sensors never end); ``False`` never stops on that.

    SIGHUP calls ``reload_config()`` (which returns a new, validated AgentConfig) and applies it with
    :meth:`Pipeline.reload`; an invalid file is logged and the running config kept.

    ``restore_signals=False`` (the ``run`` command) keeps the handlers after the stop: a SIGTERM that
    arrives while the process prints its report and exits (a service manager stopping a run that
    has just ended by itself) is logged as "already stopping", never a death by signal."""
    signals = _Signals()
    from agent.service.memtrace import install_from_env

    memtrace = install_from_env()  # EDGE_AGENT_TRACEMALLOC=1: heap growth reports on SIGUSR2 (soak runs)
    pipe = Pipeline(cfg)
    watchdog = None
    try:
        pipe.start()
        if on_started:
            on_started(pipe)
        watchdog = _SystemdLink.start(pipe)
        _run_until_done(pipe, signals, duration_s, exit_on_end, bool(cfg.sensors), reload_config, watchdog)
    finally:
        signals.stop.set()  # from here on a SIGINT/SIGTERM is "already stopping"
        log.info("stopping (%s)", ", ".join(signals.reasons) or "error")
        _shut_down(pipe, watchdog, memtrace)
        if restore_signals:
            signals.restore()
    return pipe


class _Signals:
    """SIGINT/SIGTERM ask for a stop (a second one is logged as "already stopping"); SIGHUP asks
    for a reload. Installed on creation; :meth:`restore` puts the previous handlers back."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.reasons: list[str] = []  # why the run stops, for the log
        self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            log.warning("%s again: already stopping", name)
            return
        self.reasons.append(name)
        self.stop.set()

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _run_until_done(
    pipe: Pipeline,
    signals: _Signals,
    duration_s: float | None,
    exit_on_end: bool | None,
    has_sensors: bool,
    reload_config: Callable[[], AgentConfig] | None,
    watchdog: _SystemdLink | None,
) -> None:
    """The main loop: until a stop signal, ``duration_s`` or the end of every source (see
    :func:`run_agent`); a SIGHUP reloads the config in between."""
    t_end = None if duration_s is None else time.monotonic() + duration_s
    trimmer = Trimmer()  # free heap pages back to the kernel once a minute (agent/memory.py)
    while not signals.stop.is_set():
        trimmer.maybe_trim(time.monotonic())
        if t_end is not None and time.monotonic() >= t_end:
            signals.reasons.append(f"duration {duration_s:g} s reached")
            break
        if _should_end(pipe, exit_on_end, has_sensors):
            signals.reasons.append("all sources ended")
            break
        if signals.reload_requested.is_set():
            signals.reload_requested.clear()
            _reload(pipe, reload_config, watchdog)
        signals.stop.wait(0.2)


def _shut_down(pipe: Pipeline, watchdog: _SystemdLink | None, memtrace: MemTrace | None) -> None:
    """Stop the pipeline (nothing already accepted is lost), telling systemd first."""
    if watchdog is not None:
        watchdog.stopping()
    pipe.stop()
    if watchdog is not None:
        watchdog.close()
    if memtrace is not None:
        memtrace.stop()


def _should_end(pipe: Pipeline, exit_on_end: bool | None, has_sensors: bool) -> bool:
    """Every source has ended and everything it produced is through (see :func:`run_agent`). By
    default at least one camera must really have reached its end: a daemon whose only camera lacks
    its model keeps running (and says so on the status page) instead of exiting."""
    if exit_on_end is False or (exit_on_end is None and has_sensors):
        return False
    if exit_on_end is None and not any(c.ended for c in pipe.cameras.values()):
        return False
    return pipe.idle()


def _reload(
    pipe: Pipeline, reload_config: Callable[[], AgentConfig] | None, link: _SystemdLink | None
) -> None:
    from agent.errors import AgentError

    if reload_config is None:
        log.warning("SIGHUP: no config file to reload (started without --config)")
        return
    if link is not None:
        link.n.notify(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6))
    try:
        new = reload_config()
        report = pipe.reload(new)
    except AgentError as exc:
        log.error("SIGHUP: config not reloaded, the running config is kept:\n%s", exc)
        report = None
    except Exception:
        log.exception("SIGHUP: reload failed; the running config is kept")
        report = None
    if report is not None:
        done = (
            ", ".join(f"{k}: {', '.join(v)}" for k, v in report.items() if v and k != "needs_restart")
            or "no camera changes"
        )
        log.info("reloaded config (%s)", done)
        if report["needs_restart"]:
            log.warning("changes to [%s] take effect after a restart", ", ".join(report["needs_restart"]))
        if link is not None:
            link.sync_probes(pipe)
    if link is not None:
        link.n.notify(
            READY=1,
            STATUS="running (config reloaded)"
            if report is not None
            else "running (reload failed, old config kept)",
        )


class _SystemdLink:
    """READY / STATUS / WATCHDOG / STOPPING to systemd (no-op when not started by systemd)."""

    def __init__(self, notify_mod: ModuleType, pipe: Pipeline) -> None:
        self.n = notify_mod
        self.probe_names = set(pipe.progress_probes())
        self.wd = notify_mod.Watchdog(pipe.progress_probes())
        cams = len(pipe.cameras)
        accel = ", ".join(sorted({e.accelerator for e in pipe.engines.values()})) or "none"
        self.n.ready(f"running: {cams} camera(s), accelerator {accel}")
        self.wd.start()  # after READY: the first ping must not come before it

    @classmethod
    def start(cls, pipe: Pipeline) -> _SystemdLink | None:
        import agent.service.notify as notify_mod

        return cls(notify_mod, pipe)

    def sync_probes(self, pipe: Pipeline) -> None:
        """Cameras added or removed by a reload: watch exactly the threads that now run."""
        probes = pipe.progress_probes()
        for name in self.probe_names - probes.keys():
            self.wd.remove_probe(name)
        for name, fn in probes.items():
            self.wd.add_probe(name, fn)  # replaces the probe of a reopened camera
        self.probe_names = set(probes)

    def stopping(self) -> None:
        self.n.stopping()

    def close(self) -> None:
        self.wd.stop()
