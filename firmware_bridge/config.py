"""Serial sensor config: one ``[[sensors]]`` entry per device on a UART or USB serial adapter.

Each driver file holds its own config model; this module re-exports the base."""

from __future__ import annotations

from firmware_bridge.drivers import DRIVERS, SensorConfig, register_driver

# SensorConfig is the base of every driver's config model (firmware_bridge/drivers/base.py);
# validating it picks the model of the driver the entry names.
__all__ = ["DRIVERS", "EXAMPLE_SENSORS", "SensorConfig", "register_driver"]

EXAMPLE_SENSORS = [
    {
        "name": "pm",
        "driver": "pms5003",
        "port": "/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_0001-if00-port0",
    },
    {"name": "gps", "driver": "nmea", "port": "/dev/ttyAMA0", "baud": 9600},
    {
        "name": "radar",
        "driver": "ops243",
        "port": "/dev/serial/by-id/usb-OmniPreSense_OPS243-if00",
        "init_commands": ["UK", "OJ"],
    },
    {"name": "mcu", "driver": "mcu", "port": "/dev/ttyACM0", "sample_interval_ms": 1000},
]
