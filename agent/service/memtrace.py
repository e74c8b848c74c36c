"""Opt-in Python heap tracing for soak runs: which source lines hold more memory than they did.

Off by default (tracemalloc costs CPU on every allocation and memory per live block). Turned on for
one run with an environment variable, so no config file changes::

    EDGE_AGENT_TRACEMALLOC=1 edge-agent run --config agent.toml      # 1 frame per trace; N: N frames
    EDGE_AGENT_TRACEMALLOC_OUT=/tmp/growers.json                     # where reports go (default: the log only)

Then ``kill -USR2 <pid>``: the first signal takes the *baseline* snapshot (send it after warm-up),
each later one compares a new snapshot against that baseline and writes the top growers (source
line, KiB and blocks gained) to the log and, when set, to ``EDGE_AGENT_TRACEMALLOC_OUT`` as one
JSON object (replaced atomically). The signal handler only sets an event; a daemon thread takes the
snapshot, so no lock is taken inside a signal handler. ``benchmarks/soak.py`` drives this.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV = "EDGE_AGENT_TRACEMALLOC"
ENV_OUT = "EDGE_AGENT_TRACEMALLOC_OUT"
TOP_N = 25
# our own bookkeeping and the import machinery are not the agent's memory
_IGNORE = (tracemalloc.__file__, "<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


class MemTrace:
    """Baseline on the first request, top growers against it on every later one."""

    def __init__(self, out: Path | None = None, top_n: int = TOP_N) -> None:
        self.out = out
        self.top_n = top_n
        self.baseline: tracemalloc.Snapshot | None = None
        self.baseline_t = 0.0
        self.reports = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _snapshot(self) -> tracemalloc.Snapshot:
        snap = tracemalloc.take_snapshot()
        return snap.filter_traces([tracemalloc.Filter(False, f) for f in _IGNORE])

    def request(self) -> None:
        """Ask for a baseline or a report (safe from a signal handler)."""
        self._wake.set()

    def report(self) -> dict[str, Any]:
        """Take the baseline (first call) or compare against it; returns what was written."""
        snap = self._snapshot()
        cur, peak = tracemalloc.get_traced_memory()
        now = time.time()
        doc: dict[str, Any] = {
            "time": now,
            "traced_mib": round(cur / 2**20, 3),
            "peak_mib": round(peak / 2**20, 3),
        }
        if self.baseline is None:
            self.baseline, self.baseline_t = snap, now
            doc.update(kind="baseline", growers=[])
            log.info("tracemalloc baseline: %.1f MiB traced", cur / 2**20)
        else:
            stats = snap.compare_to(self.baseline, "lineno")
            stats.sort(key=lambda s: s.size_diff, reverse=True)
            growers = [
                {
                    "where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                    "size_diff_kib": round(s.size_diff / 1024, 1),
                    "count_diff": s.count_diff,
                    "size_kib": round(s.size / 1024, 1),
                }
                for s in stats[: self.top_n]
            ]
            self.reports += 1
            doc.update(
                kind="growth",
                since_baseline_s=round(now - self.baseline_t, 1),
                total_diff_kib=round(sum(s.size_diff for s in stats) / 1024, 1),
                growers=growers,
            )
            log.info(
                "tracemalloc growth over %.0f s: %+.1f KiB in all; top: %s",
                doc["since_baseline_s"],
                doc["total_diff_kib"],
                "; ".join(f"{g['where']} {g['size_diff_kib']:+.1f} KiB" for g in growers[:5]) or "none",
            )
        if self.out is not None:
            tmp = self.out.with_name(self.out.name + ".tmp")
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            os.replace(tmp, self.out)
        return doc

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.report()
            except Exception:  # a report must never take the daemon down
                log.exception("tracemalloc report failed")

    def start(self) -> MemTrace:
        self._thread = threading.Thread(target=self._loop, name="memtrace", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)


def install_from_env(environ: Any = None) -> MemTrace | None:
    """Start tracing and route SIGUSR2 to reports when ``EDGE_AGENT_TRACEMALLOC`` is set (main thread)."""
    env = os.environ if environ is None else environ
    val = (env.get(ENV) or "").strip()
    if val in ("", "0", "false", "no", "off"):
        return None
    try:
        frames = max(1, int(val))
    except ValueError:
        frames = 1
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    out = env.get(ENV_OUT)
    mt = MemTrace(Path(out) if out else None).start()
    if hasattr(signal, "SIGUSR2"):
        signal.signal(signal.SIGUSR2, lambda _s, _f: mt.request())
    log.warning("tracemalloc on (%d frame(s)); SIGUSR2 writes a baseline, then the growth against it", frames)
    return mt
