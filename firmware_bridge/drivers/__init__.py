"""Driver registry: the in-tree drivers, one line each. ``edge-agent sensors decode --driver NAME``
and the ``driver`` key of a ``[[sensors]]`` entry take these names. A driver outside this package
calls :func:`register_driver` in its own module (see CONTRIBUTING.md, "A sensor driver")."""

from __future__ import annotations

from firmware_bridge.drivers.base import DRIVERS, Driver, SensorConfig, register_driver
from firmware_bridge.drivers.mcu import Mcu
from firmware_bridge.drivers.nmea import Nmea
from firmware_bridge.drivers.ops243 import Ops243
from firmware_bridge.drivers.pms5003 import Pms5003
from firmware_bridge.drivers.sds011 import Sds011

register_driver(Pms5003)
register_driver(Pms5003, "pms7003")  # same frame format and commands
register_driver(Sds011)
register_driver(Nmea)
register_driver(Ops243)
register_driver(Mcu)

DRIVER_NAMES = tuple(DRIVERS)
"""The in-tree drivers (fixed at import; ``DRIVERS`` also holds plugins registered later)."""


def make_driver(name: str, options=None) -> Driver:
    """A new driver instance by registry name (``KeyError`` if unknown)."""
    return DRIVERS[name](options)


__all__ = ["DRIVERS", "DRIVER_NAMES", "Driver", "SensorConfig", "make_driver", "register_driver"]
