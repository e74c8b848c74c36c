"""Driver registry: one line per driver. ``edge-agent sensors decode --driver NAME`` and the
``driver`` key of a ``[[sensors]]`` entry take these names."""

from __future__ import annotations

from firmware_bridge.drivers.base import Driver
from firmware_bridge.drivers.mcu import Mcu
from firmware_bridge.drivers.nmea import Nmea
from firmware_bridge.drivers.ops243 import Ops243
from firmware_bridge.drivers.pms5003 import Pms5003
from firmware_bridge.drivers.sds011 import Sds011

DRIVERS: dict[str, type[Driver]] = {
    "pms5003": Pms5003,
    "pms7003": Pms5003,  # same frame format and commands
    "sds011": Sds011,
    "nmea": Nmea,
    "ops243": Ops243,
    "mcu": Mcu,
}

DRIVER_NAMES = tuple(DRIVERS)


def make_driver(name: str, options=None) -> Driver:
    """A new driver instance by registry name (``KeyError`` if unknown)."""
    return DRIVERS[name](options)
