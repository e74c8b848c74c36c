"""MQTT and summary settings (the ``[mqtt]`` and ``[summary]`` sections)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.configbase import Section, resolve_secret

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_COMMAND = re.compile(r"^[a-z][a-z0-9_-]*(/[a-z][a-z0-9_-]*)?$")


class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect with TLS (the port then defaults to 8883).")
    ca_file: Path | None = Field(
        None,
        description="CA certificate(s) that signed the broker's certificate (PEM). Unset: the system's trusted CAs.",
        examples=["/etc/edge-agent/city-ca.pem"],
    )
    cert_file: Path | None = Field(
        None, description="Client certificate for mutual TLS (PEM).", examples=["/etc/edge-agent/unit.crt"]
    )
    key_file: Path | None = Field(
        None, description="Private key of cert_file (PEM).", examples=["/etc/edge-agent/unit.key"]
    )
    key_password: str | None = Field(
        None, description="Password of an encrypted key_file (prefer key_password_file)."
    )
    key_password_file: str | None = Field(None, description="File holding the key password.")
    key_password_env: str | None = Field(None, description="Environment variable holding the key password.")
    verify_hostname: bool = Field(
        True, description="Check that the broker's certificate names `host`. Turn off only for testing."
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together (mutual TLS needs both)")
        return self

    def resolved_key_password(self) -> str | None:
        return resolve_secret(
            self.key_password, self.key_password_file, self.key_password_env, "mqtt.tls.key_password"
        )


class MqttConfig(Section):
    enabled: bool = Field(
        False, description="Connect to the broker. Off: summaries still go to the outbox and wait there."
    )
    host: str = Field("localhost", description="Broker host name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port (default 1883, or 8883 with TLS).", examples=[8883]
    )
    protocol: Literal["3.1.1", "5"] = Field("5", description="MQTT protocol version.")
    tls: TlsConfig = Field(
        default_factory=TlsConfig, description="TLS to the broker (CA, client certificate, hostname check)."
    )
    username: str | None = Field(None, description="User name (default: none).", examples=["unit-0042"])
    password: str | None = Field(
        None, description="Password inline (prefer password_file or password_env; never logged)."
    )
    password_file: str | None = Field(
        None, description="File holding the password.", examples=["/etc/edge-agent/mqtt.pass"]
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the password.", examples=["EDGE_AGENT_MQTT_PASSWORD"]
    )
    topic_prefix: str = Field(
        "city",
        description="First topic level(s): topics are {prefix}/{site}/{device}/summary|status|health|event|cmd/...",
    )
    keepalive_s: int = Field(
        30,
        ge=5,
        le=3600,
        description="MQTT keepalive; the broker publishes the last will after 1.5x this without traffic.",
    )
    persistent_session: bool = Field(
        True, description="Keep the broker-side session (subscriptions, queued commands) across reconnects."
    )
    session_expiry_s: int = Field(
        7 * 86400, ge=0, description="MQTT 5: how long the broker keeps the session after a disconnect."
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for the TCP/TLS connection and the broker's CONNACK."
    )
    reconnect_initial_s: float = Field(
        1.0, gt=0, description="First wait before reconnecting (exponential backoff with jitter)."
    )
    reconnect_max_s: float = Field(120.0, gt=0, description="Longest wait between reconnect attempts.")
    max_inflight: int = Field(
        20, ge=1, le=1000, description="Most published messages waiting for their PUBACK."
    )
    delivery: Literal["live-first", "seq"] = Field(
        "live-first",
        description="live-first: health and events before a backlog of summaries (each class in seq order); seq: strictly in seq order.",
    )
    backfill_rate_per_s: float = Field(
        20.0,
        ge=0,
        description="Most summaries per second sent from a backlog (0: no cap). Live messages are never capped.",
    )
    health_interval_s: float = Field(60.0, gt=0, description="How often a health message is queued.")
    commands: list[str] = Field(
        ["ping", "config/get", "health/get", "rebirth", "replay"],
        description="Commands accepted from the hub on .../cmd/NAME (default: the read-only ones plus replay).",
    )
    max_replay: int = Field(10000, ge=1, description="Most messages one replay command may ask for.")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v):
            raise ValueError(
                "topic_prefix: levels of letters, digits, '_', '-', '.' separated by '/' (no wildcards, no leading '$' or '/')"
            )
        return v

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _COMMAND.match(name):
                raise ValueError(
                    f"command name {name!r}: lower-case words, at most one '/' (e.g. 'config/get')"
                )
        return v

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if sum(x is not None for x in (self.password, self.password_file, self.password_env)) > 1:
            raise ValueError("give the password one way only: password, password_file or password_env")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls.enabled else 1883)

    def resolved_password(self) -> str | None:
        """The password from env, file or inline (raises ConfigError naming the source if unreadable)."""
        return resolve_secret(self.password, self.password_file, self.password_env, "mqtt.password")


class SummaryConfig(Section):
    interval_s: float = Field(
        60.0,
        gt=0,
        description="Length of a summary window in seconds (windows are aligned to the UTC clock).",
    )
    catchup_windows: int = Field(
        60,
        ge=0,
        description="At start, windows missed while the agent was down (up to this many) are summarised from the database, marked catchup.",
    )
    flush_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest wait for pending writes of a window to be committed before it is summarised.",
    )


SinkKind = Literal["summary", "health", "event"]


def _all_kinds() -> list[SinkKind]:
    return ["summary", "health", "event"]


class SinkConfig(Section):
    """One ``[[sinks]]`` entry: an outbox sink besides MQTT (registered by a plugin; agent/sync/sink.py)."""

    type: str = Field(
        description="The sink type, as its module registers it (register_sink).", examples=["webhook"]
    )
    name: str | None = Field(
        None,
        description="Its name (delivery state is kept under it). Unset: the type.",
        examples=["city-hook"],
    )
    kinds: list[SinkKind] = Field(
        default_factory=_all_kinds,
        min_length=1,
        description="Which outbox messages it takes; the others are never kept for it.",
    )
    batch: int = Field(100, ge=1, le=10000, description="Most messages per send().")
    rate_per_s: float = Field(0.0, ge=0, description="Most messages a second (token bucket); 0: no cap.")
    retry_initial_s: float = Field(1.0, gt=0, description="Backoff after the first failed connect/send.")
    retry_max_s: float = Field(60.0, gt=0, description="Longest backoff between tries.")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Settings for the sink itself (its type reads them)."
    )

    @property
    def sink_name(self) -> str:
        return self.name or self.type
