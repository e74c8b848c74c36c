"""What every driver is: its config model, a stream decoder, the bytes it sends, its capabilities.

A driver is one file (in ``firmware_bridge/drivers/`` or anywhere else) holding

* its config model: a :class:`SensorConfig` subclass with only the keys that driver takes (the
  common serial keys come from the base);
* its :class:`Driver` subclass: the parser, the bytes it sends at connect / on each poll, and its
  capabilities as class data (``commands``, ``gps_clock``) that the service and the doctor read
  instead of asking for a driver name;
* optionally its simulator model (a :class:`DeviceModel`, what ``edge-agent simulate-serial`` and
  the tests use);

and it calls :func:`register_driver`. The in-tree drivers are listed in
``firmware_bridge/drivers/__init__.py``; an out-of-tree driver registers itself when its module is
imported. The service feeds a driver the bytes read from the port and writes the bytes it asks
for. Drivers never touch the port themselves, so the same class decodes a live port, a capture
file (``edge-agent sensors decode``) and fuzz input.

``[[sensors]]`` entries are a union discriminated by ``driver``: validating a :class:`SensorConfig`
picks the registered driver's config model, so a key of another driver is an error that names the
driver, and an unknown key stays an error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from agent.configbase import Section, check_name
from firmware_bridge.decoder import StreamDecoder


class SensorConfig(Section):
    """The keys every serial sensor has. Validating it gives the named driver's config model."""

    name: str = Field(
        ...,
        description="Sensor id: the `sensor` column of readings and a key in health and summaries.",
        examples=["pm"],
    )
    driver: str = Field(
        ...,
        description="Protocol spoken on the line: pms5003, pms7003, sds011, nmea (GPS), ops243 (radar), mcu (our microcontroller, see firmware_bridge/PROTOCOL.md), or a plugin's name. The other keys of the entry depend on it.",
        examples=["pms5003"],
    )
    port: str = Field(
        ...,
        description="Serial device. Prefer the stable /dev/serial/by-id/... path (or a udev symlink): it survives replugging and re-enumeration.",
        examples=["/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_0001-if00-port0"],
    )
    enabled: bool = Field(True, description="A disabled sensor is not opened.")
    baud: int | None = Field(
        None,
        gt=0,
        description="Baud rate (default: the driver's: 9600 pms5003/sds011/nmea, 19200 ops243, 115200 mcu).",
        examples=[9600],
    )
    bytesize: Literal[5, 6, 7, 8] = Field(8, description="Data bits.")
    parity: Literal["N", "E", "O", "M", "S"] = Field(
        "N", description="Parity: N(one), E(ven), O(dd), M(ark), S(pace)."
    )
    stopbits: float = Field(1, description="Stop bits: 1, 1.5 or 2.")
    exclusive: bool = Field(
        True, description="Lock the port (flock) so no other program can open it while the agent has it."
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, description="First wait before reopening a port that disappeared or failed."
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, description="Longest wait between reopen attempts (exponential backoff with jitter)."
    )
    stale_after_s: float = Field(
        30.0,
        gt=0,
        description="A connected port that yields no valid frame for this long is closed and reopened.",
    )

    def __new__(cls, *args: Any, **data: Any) -> Any:
        # SensorConfig(driver="pms5003", ...) builds the pms5003 config model (see _dispatch)
        if cls is SensorConfig and data.get("driver") in DRIVERS:
            cls = DRIVERS[data["driver"]].Config
        return super().__new__(cls)

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if cls is not SensorConfig or not isinstance(data, dict):
            return handler(data)
        driver = data.get("driver")
        if not isinstance(driver, str) or driver not in DRIVERS:
            return handler(data)  # "driver: is required" / not a registered driver (_driver)
        model = DRIVERS[driver].Config
        for key in data:
            if key not in model.model_fields:
                owners = sorted(n for n, d in DRIVERS.items() if key in d.Config.model_fields)
                if owners:
                    raise ValueError(
                        f"{key!r} is not a setting of the {driver} driver (it is one of {', '.join(owners)}); "
                        f"remove it or fix driver"
                    )
        return model.model_validate(data)

    @model_serializer(mode="wrap")
    def _dump_driver_keys(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # a field typed SensorConfig (AgentConfig.sensors) dumps with the base's schema: add the
        # keys of the driver's model, so model_dump / config_hash / redacted() see every key
        out = handler(self)
        if type(self) is SensorConfig or not isinstance(out, dict):
            return out
        for key, field in type(self).model_fields.items():
            if key in out or key in SensorConfig.model_fields:
                continue
            if info.include is not None and key not in info.include:
                continue
            if info.exclude is not None and key in info.exclude:
                continue
            v = getattr(self, key)
            if info.exclude_none and v is None:
                continue
            if info.exclude_unset and key not in self.model_fields_set:
                continue
            if info.exclude_defaults and v == field.get_default(call_default_factory=True):
                continue
            out[key] = list(v) if isinstance(v, (list, tuple)) else v
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "sensor name")

    @field_validator("driver")
    @classmethod
    def _driver(cls, v: str) -> str:
        if v not in DRIVERS:
            raise ValueError(
                f"not one of {', '.join(sorted(DRIVERS))} "
                "(a plugin driver's module must be imported before the config is read)"
            )
        return v

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError("stopbits must be 1, 1.5 or 2")
        return int(v) if v in (1, 2) else v

    @model_validator(mode="after")
    def _common_checks(self) -> SensorConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self

    @property
    def effective_baud(self) -> int:
        return self.baud or DRIVERS[self.driver].default_baud

    @property
    def driver_class(self) -> type[Driver]:
        return DRIVERS[self.driver]

    def summary_settings(self) -> dict[str, Any]:
        """The summary settings this sensor's model has (AQI table, NowCast, clock tolerance), recorded
        in ``sensor_settings`` by the sensor service (``firmware_bridge.summary`` reads them)."""
        keys = ("aqi_table", "aqi_nowcast", "clock_tolerance_s")
        return {k: getattr(self, k) for k in keys if k in type(self).model_fields}


class PassiveModeConfig(SensorConfig):
    """Keys of a sensor that either pushes readings or is polled (pms5003, sds011)."""

    mode: Literal["active", "passive"] = Field(
        "active",
        description="active (the sensor pushes) or passive (the agent asks every poll_interval_s; SDS011 'query' mode).",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, le=3600, description="Passive mode: seconds between read requests."
    )

    @model_validator(mode="after")
    def _poll_checks(self) -> PassiveModeConfig:
        if self.mode == "passive" and self.stale_after_s <= 2 * self.poll_interval_s:
            raise ValueError(
                "stale_after_s must be more than twice poll_interval_s (else the port is reopened between polls)"
            )
        return self


class AqiConfig(SensorConfig):
    """Keys of a particulate matter sensor's summaries."""

    aqi_table: Literal["epa-2024", "epa-2012"] = Field(
        "epa-2024", description="Breakpoint table of the AQI in summaries."
    )
    aqi_nowcast: bool = Field(
        True,
        description="The current AQI in summaries is the EPA NowCast (12 hourly averages); false: the window mean (not an EPA AQI).",
    )


class DeviceModel:
    """A simulated device: the bytes of one report (``tick``) and answers to the host's bytes."""

    interval_s = 1.0

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.t0 = time.monotonic()

    def start(self) -> bytes:
        return b""

    def tick(self) -> bytes:
        return b""

    def answer(self, data: bytes) -> bytes:
        return b""

    def _walk(self, v: float, lo: float, hi: float, step: float) -> float:
        return min(hi, max(lo, v + self.rng.uniform(-step, step)))


class Driver(StreamDecoder):
    """Base driver. ``options`` are the sensor's config (its ``Config``) or None for defaults.

    Capabilities (class data the service reads):
        ``Config``: the config model of a ``[[sensors]]`` entry naming this driver.
        ``commands``: the device answers request/ack commands (``edge-agent sensors command``);
            the service runs a CommandClient and sends :meth:`setup_requests` at connect.
        ``gps_clock``: the device's messages carry GPS time; they feed the unit's GPS clock.
        ``simulator``: ``simulator(rng, **options)`` builds its :class:`DeviceModel` (or None).
    """

    name: ClassVar[str] = ""
    default_baud: ClassVar[int] = 9600
    description: ClassVar[str] = ""
    Config: ClassVar[type[SensorConfig]] = SensorConfig
    commands: ClassVar[bool] = False
    gps_clock: ClassVar[bool] = False
    simulator: ClassVar[Callable[..., DeviceModel] | None] = None

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.options = options

    def opt(self, key: str, default: Any) -> Any:
        """A config value, or ``default`` when decoding without a config or the key is unset."""
        v = getattr(self.options, key, None) if self.options is not None else None
        return default if v is None else v

    def startup_commands(self) -> list[bytes]:
        """Bytes to send right after the port opens (mode, units, ...)."""
        return []

    def poll_command(self) -> bytes | None:
        """Bytes to send every ``poll_interval_s`` (passive / query modes); None: the device pushes."""
        return None

    def sleep_command(self, sleep: bool) -> bytes | None:
        """Bytes that put the device to sleep (True) or wake it (False); None if unsupported."""
        return None

    def setup_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """``commands`` drivers: (command, fields) sent through the command client after connect."""
        return []

    def hello_request(self) -> bytes | None:
        """Bytes that make the device introduce itself (the doctor sends them); None: it just talks."""
        return None

    def health_extra(self) -> dict[str, Any]:
        """Driver-specific health fields (firmware version, sequence gaps, ...)."""
        return {}


DRIVERS: dict[str, type[Driver]] = {}
"""Registered drivers by name (the ``driver`` key of a ``[[sensors]]`` entry)."""


def register_driver(cls: type[Driver], name: str | None = None) -> type[Driver]:
    """Make ``cls`` the driver called ``name`` (default ``cls.name``). Returns ``cls`` (a decorator).

    Raises ValueError for a name already taken by another driver, or a ``Config`` that is not a
    SensorConfig subclass.
    """
    key = name or cls.name
    if not key:
        raise ValueError(f"{cls.__name__}: a driver needs a name")
    check_name(key, "driver name")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, SensorConfig)):
        raise ValueError(f"driver {key}: Config must be a SensorConfig subclass")
    old = DRIVERS.get(key)
    if old is not None and old is not cls:
        raise ValueError(f"driver {key!r} is already registered ({old.__module__}.{old.__qualname__})")
    DRIVERS[key] = cls
    return cls
