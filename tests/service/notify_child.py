"""A tiny daemon for test_notify: worker threads, a Watchdog over them, READY/STOPPING.

SIGUSR1 stalls the "camera:north" thread on purpose (it stops recording progress).
"""

import signal
import sys
import threading
import time

from agent.service import notify
from agent.service.signals import install_stop_handlers

stop = threading.Event()
stall = threading.Event()
progress = {"camera:north": time.monotonic(), "inference": time.monotonic()}


def worker(name: str) -> None:
    while not stop.is_set():
        if not (name == "camera:north" and stall.is_set()):
            progress[name] = time.monotonic()
        time.sleep(0.02)


install_stop_handlers(stop)
signal.signal(signal.SIGUSR1, lambda *_: stall.set())
threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in progress]
for t in threads:
    t.start()
wd = notify.Watchdog({n: (lambda n=n: progress[n]) for n in progress})
if not wd.start():
    sys.exit("no watchdog interval")
notify.ready("running: 1 camera")
while not stop.wait(0.05):
    pass
wd.stop()
for t in threads:
    t.join(1)
print("clean exit", flush=True)
