"""Serial sensor config: one ``[[sensors]]`` entry per device on a UART or USB serial adapter."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.configbase import Section, check_name

DriverName = Literal["pms5003", "pms7003", "sds011", "nmea", "ops243", "mcu"]


class SensorConfig(Section):
    name: str = Field(
        ...,
        description="Sensor id: the `sensor` column of readings and a key in health and summaries.",
        examples=["pm"],
    )
    driver: DriverName = Field(
        ...,
        description="Protocol spoken on the line: pms5003, pms7003, sds011, nmea (GPS), ops243 (radar), mcu (our microcontroller, see firmware_bridge/PROTOCOL.md).",
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
    stopbits: Literal[1, 1.5, 2] = Field(1, description="Stop bits.")
    exclusive: bool = Field(
        True, description="Lock the port (flock) so no other program can open it while the agent has it."
    )
    mode: Literal["active", "passive"] = Field(
        "active",
        description="pms5003/sds011: active (the sensor pushes) or passive (the agent asks every poll_interval_s; SDS011 'query' mode).",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, le=3600, description="Passive mode: seconds between read requests."
    )
    warmup_s: float = Field(
        30.0,
        ge=0,
        description="pms5003: readings during this long after connect/wake are flagged warming_up.",
    )
    working_period_min: int | None = Field(
        None,
        ge=0,
        le=30,
        description="sds011: set the working period at connect (0: continuous, 1-30: one measurement every n minutes).",
        examples=[0],
    )
    init_commands: list[str] = Field(
        default_factory=list,
        description='ops243: ASCII commands sent at connect, e.g. ["UK", "OJ"] (km/h, JSON output).',
    )
    inbound_positive: bool = Field(
        True,
        description="ops243: a positive speed means inbound (towards the sensor). Set false if the mounting reverses it.",
    )
    sample_interval_ms: int | None = Field(
        None,
        ge=100,
        le=3_600_000,
        description="mcu: sampling interval sent to the microcontroller at connect (set_interval).",
        examples=[1000],
    )
    command_timeout_s: float = Field(
        0.5, gt=0, le=30, description="mcu: how long to wait for an ack or nack before resending a command."
    )
    command_retries: int = Field(
        3, ge=0, le=10, description="mcu: resends of an unanswered command before it times out."
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
    aqi_table: Literal["epa-2024", "epa-2012"] = Field(
        "epa-2024", description="PM sensors: breakpoint table of the AQI in summaries."
    )
    aqi_nowcast: bool = Field(
        True,
        description="PM sensors: the current AQI in summaries is the EPA NowCast (12 hourly averages); false: the window mean (not an EPA AQI).",
    )
    clock_tolerance_s: float = Field(
        2.0,
        gt=0,
        description="nmea: the system clock is trusted when it is within this many seconds of GPS time.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "sensor name")

    @model_validator(mode="after")
    def _checks(self) -> SensorConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if self.mode == "passive" and self.stale_after_s <= 2 * self.poll_interval_s:
            raise ValueError(
                "stale_after_s must be more than twice poll_interval_s (else the port is reopened between polls)"
            )
        if self.working_period_min and self.stale_after_s < 90 * self.working_period_min:
            raise ValueError(
                "stale_after_s must be at least 1.5 x working_period_min minutes (the sensor is silent in between)"
            )
        return self

    @property
    def effective_baud(self) -> int:
        from firmware_bridge.drivers import DRIVERS

        return self.baud or DRIVERS[self.driver].default_baud


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
