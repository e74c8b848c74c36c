"""What each simulated device says: realistic frames, answers to host commands, and line noise.

A :class:`DeviceModel` produces the bytes of one report (``tick``) and answers the host's bytes
(``answer``). :func:`corrupt` applies the line faults the tests and the demo need: random
garbage, truncated frames and flipped bytes (bad checksums).
"""

from __future__ import annotations

import random

from firmware_bridge.drivers import DRIVERS
from firmware_bridge.drivers.base import DeviceModel


def corrupt(frame: bytes, rng: random.Random, noise: float) -> bytes:
    """With probability ``noise`` each: prepend garbage, cut the frame short, flip one byte."""
    out = frame
    if noise <= 0:
        return out
    if rng.random() < noise:
        out = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 24))) + out
    r = rng.random()
    if r < noise / 2:
        out = out[: rng.randint(1, max(1, len(out) - 1))]
    elif r < noise:
        i = rng.randrange(len(out))
        out = out[:i] + bytes([out[i] ^ (1 << rng.randrange(8))]) + out[i + 1 :]
    return out


def make_model(device: str, rng: random.Random, **kw) -> DeviceModel:
    """The simulator model of a registered driver (its ``simulator`` capability); ``kw``: its options."""
    sim = DRIVERS[device].simulator if device in DRIVERS else None
    if sim is None:
        raise ValueError(f"no simulator for device {device!r} (simulated: {', '.join(simulated())})")
    return sim(rng, **kw)


def simulated() -> list[str]:
    """Names of the registered drivers that bring a simulator model."""
    return sorted(n for n, d in DRIVERS.items() if d.simulator is not None)


__all__ = ["DeviceModel", "corrupt", "make_model", "simulated"]
