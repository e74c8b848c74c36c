"""One backoff for every retry loop: cameras, the broker link, serial sensors, NGSI-LD, hub replays.

``Backoff(initial, maximum)`` answers "how long until the next try?": ``initial`` after the first
failure, ``factor`` (2) times longer after each further one, the base never above ``maximum``; the
base is then multiplied by a random factor drawn uniformly from ``jitter = (low, high)``, so units
that lost the same broker or camera network do not all come back in the same second. Since the
jitter multiplies the capped base, a wait can exceed ``maximum`` by the jitter's high end
(``spread(0.2)`` -> at most 1.2 x maximum); with ``EQUAL`` or ``FULL`` it never does.

``next_delay()`` counts a failure and returns its wait; ``reset()`` (after a success) starts again
from ``initial``; ``wait(stop)`` sleeps the next wait on a ``threading.Event`` and returns True if
the event was set meanwhile. ``delay_for(n)`` is the same arithmetic for callers that keep their own
failure count (the camera, a gap's request count in the hub). Pass ``seed`` (or an ``rng``) for
repeatable draws in tests. Not retry loops over a network, so left with their own deterministic
doubling: the API's token lock-out (``agent.api.auth``), the accelerator re-probe
(``agent.inference.engine``) and the writer's disk-full retry (``agent.store.writer``).
"""

from __future__ import annotations

import math
import random
import threading
import time

Jitter = tuple[float, float]

EQUAL: Jitter = (0.5, 1.0)  # "equal jitter": between half and all of the base
FULL: Jitter = (0.0, 1.0)  # "full jitter": anywhere from 0 to the base


def spread(fraction: float) -> Jitter:
    """Jitter of +-``fraction`` around the base: ``spread(0.2)`` is (0.8, 1.2)."""
    return (1.0 - fraction, 1.0 + fraction)


class Backoff:
    """Exponential backoff with a cap and seedable jitter; see the module docstring."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: Jitter = (0.8, 1.2),
        rng: random.Random | None = None,
        seed: int | None = None,
    ) -> None:
        low, high = jitter
        if not (initial > 0 and maximum >= initial and factor >= 1 and 0 <= low <= high):
            raise ValueError(
                f"backoff needs 0 < initial <= maximum, factor >= 1 and 0 <= low <= high "
                f"(got initial={initial}, maximum={maximum}, factor={factor}, jitter={jitter})"
            )
        self.initial, self.maximum, self.factor, self.jitter = float(initial), float(maximum), factor, jitter
        self.rng = rng if rng is not None else random.Random(seed)
        self.failures = 0  # counted by next_delay(), cleared by reset()

    def base(self, failures: int) -> float:
        """The wait before jitter after ``failures`` earlier failures (0: ``initial``), capped."""
        n = max(0, failures)
        if self.factor > 1 and n * math.log(self.factor) >= math.log(self.maximum / self.initial):
            return self.maximum  # reached the cap (and no float overflow for a huge n)
        return min(self.maximum, self.initial * self.factor**n)

    def delay_for(self, failures: int) -> float:
        """A jittered wait after ``failures`` earlier failures; does not change the count."""
        return self.base(failures) * self.rng.uniform(*self.jitter)

    def next_delay(self) -> float:
        """Count one more failure and return the wait before the next try."""
        d = self.delay_for(self.failures)
        self.failures += 1
        return d

    def reset(self) -> None:
        """A success: the next failure waits ``initial`` again."""
        self.failures = 0

    def wait(self, stop: threading.Event) -> bool:
        """Sleep ``next_delay()`` seconds or until ``stop`` is set; True when it was set."""
        return stop.wait(self.next_delay())


class TokenBucket:
    """A token bucket for a send rate: ``rate`` tokens a second, at most ``burst`` saved (rate <= 0: no limit)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(1.0, burst)
        self.tokens, self.t = self.burst, time.monotonic()

    def take_up_to(self, n: int) -> tuple[int, float]:
        """Take up to ``n`` tokens: (how many, 0.0), or (0, the seconds until one is available)."""
        if self.rate <= 0:
            return n, 0.0
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        k = min(n, int(self.tokens))
        if k:
            self.tokens -= k
            return k, 0.0
        return 0, (1 - self.tokens) / self.rate

    def give_back(self, k: int) -> None:
        """Return tokens taken but not used."""
        if k and self.rate > 0:
            self.tokens = min(self.burst, self.tokens + k)
