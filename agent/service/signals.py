"""Signal handling for the daemon: SIGTERM / SIGINT mean "stop cleanly", a second one means "now".

systemd stops the agent with SIGTERM (then SIGKILL after ``TimeoutStopSec=``). On the first signal
we tell systemd ``STOPPING=1`` and set an event the pipeline's main loop waits on; the pipeline then
stops its stages in reverse order, flushing the database writer. A second SIGINT/SIGTERM (an
impatient Ctrl-C) exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from agent.service import notify

log = logging.getLogger(__name__)


def install_stop_handlers(stop: threading.Event, on_reload: Callable[[], None] | None = None) -> None:
    """Route SIGTERM/SIGINT to ``stop`` (sending ``STOPPING=1``) and SIGHUP to ``on_reload`` if given.

    Must be called from the main thread (a Python rule for signal handlers).
    """

    def _stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second %s: exiting without a clean shutdown", name)
            os._exit(128 + signum)
        log.info("%s received: stopping", name)
        notify.stopping(f"stopping ({name})")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if on_reload is not None:

        def _hup(_signum: int, _frame: object) -> None:
            log.info("SIGHUP received: reloading")
            on_reload()

        signal.signal(signal.SIGHUP, _hup)
