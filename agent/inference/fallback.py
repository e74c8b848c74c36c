"""The engine's accelerator fallback while running: after :data:`FALLBACK_AFTER` failed invokes
in a row, move down :data:`ORDER` (the ``auto`` order of :mod:`agent.inference.delegates`), then
re-probe the lost accelerator and move back when it loads (see :mod:`agent.inference.engine`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from agent.errors import ModelError
from agent.inference.adapters import Adapter
from agent.inference.delegates import ORDER as FALLBACK_ORDER
from agent.inference.delegates.base import InterpreterInfo

log = logging.getLogger("agent.inference.engine")

ORDER = FALLBACK_ORDER["auto"]  # the mid-run fallback walks it after the lost accelerator
FALLBACK_AFTER = 3  # failed invokes in a row before the accelerator counts as lost


class AcceleratorFallback:
    """The fallback state machine; :class:`~agent.inference.engine.Engine` sets the attributes."""

    name: str
    accelerator: str
    preferred: str
    rebuild: Any  # (accelerator) -> (InterpreterInfo, Adapter), set by load_engine
    fallback: dict[str, Any] | None
    switches: list[dict[str, Any]]
    probe_initial_s: float
    probe_max_s: float
    next_probe_at: float
    _probe_delay: float

    def _swap(self, info: InterpreterInfo, adapter: Adapter) -> None:  # pragma: no cover - Engine's
        raise NotImplementedError

    def _record(self, event: str, frm: str, to: str, reason: str) -> None:
        self.switches = (
            self.switches + [{"ts": time.time(), "event": event, "from": frm, "to": to, "reason": reason}]
        )[-10:]

    def _fall_back(self, reason: str) -> bool:
        """Move to the next accelerator after the current one. False when there is none."""
        if self.rebuild is None:
            return False
        lost = self.accelerator
        order = list(ORDER)
        nxt = order[order.index(lost) + 1 :] if lost in order else ["cpu"]
        tried: list[str] = []
        for acc in nxt:
            try:
                info, adapter = self.rebuild(acc)
            except (ModelError, OSError) as exc:
                tried.append(getattr(exc, "message", str(exc)))
                continue
            self._swap(info, adapter)
            if self.fallback is None:
                self.fallback = {
                    "lost": lost,
                    "since": time.time(),
                    "reason": reason,
                    "probes": 0,
                    "next_probe_in_s": None,
                }
            else:
                self.fallback["reason"] = reason
            self._probe_delay = min(self.probe_max_s, max(self.probe_initial_s, self._probe_delay * 2))
            self.next_probe_at = time.monotonic() + self._probe_delay
            self.fallback["next_probe_in_s"] = self._probe_delay
            self._record("lost", lost, acc, reason)
            log.warning(
                "inference: %s lost on %s after %d failed invokes (%s); running on %s, re-probing in %.1f s",
                self.name,
                lost,
                FALLBACK_AFTER,
                reason,
                acc,
                self._probe_delay,
            )
            return True
        log.error(
            "inference: %s lost on %s (%s) and no other accelerator loads: %s",
            self.name,
            lost,
            reason,
            "; ".join(tried),
        )
        return False

    def _probe_back(self) -> None:
        """Try the accelerator lost earlier again; move back when it loads."""
        fb = self.fallback
        assert fb is not None
        fb["probes"] += 1
        try:
            info, adapter = self.rebuild(self.preferred)
        except (ModelError, OSError) as exc:
            self._probe_delay = min(self.probe_max_s, self._probe_delay * 2)
            self.next_probe_at = time.monotonic() + self._probe_delay
            fb["next_probe_in_s"] = self._probe_delay
            fb["last_probe_error"] = getattr(exc, "message", str(exc))
            log.info(
                "inference: %s still unavailable (%s); next probe in %.0f s",
                self.preferred,
                fb["last_probe_error"],
                self._probe_delay,
            )
            return
        was = self.accelerator
        self._swap(info, adapter)
        self.fallback = None
        self._record("back", was, self.accelerator, f"{self.preferred} loads again")
        log.warning("inference: %s back on %s (after %d probe(s))", self.name, self.accelerator, fb["probes"])

    def accelerator_status(self) -> dict[str, Any]:
        """For status, health and the birth: where the model runs and, after a loss, why."""
        return {
            "accelerator": self.accelerator,
            "preferred": self.preferred,
            "fallback": dict(self.fallback) if self.fallback else None,
            "switches": [dict(x) for x in self.switches],
        }
