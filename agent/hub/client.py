"""A hub worker's MQTT side: the broker URL, the agents' prefix in a subscription, and the paho client
(manual acks, so a message is acknowledged only once stored; a persistent session with a fixed
client id, so the broker queues messages while the worker is down)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def prefix_of(topic: str) -> str:
    """'$share/g/city/#' -> 'city': the levels before the first wildcard. A subscription narrowed to a
    site or device ('city/site-1/#') needs the prefix given explicitly (``--prefix city``)."""
    parts = topic.split("/")
    if parts[0] == "$share":
        parts = parts[2:]
    fixed = []
    for p in parts:
        if p in ("#", "+"):
            break
        fixed.append(p)
    return "/".join(fixed)


def parse_broker(broker: str) -> tuple[str, int, bool, str | None, str | None]:
    """``(host, port, tls, user, password)`` of ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...``
    (``tcp://`` and ``ssl://`` too); the port defaults to 1883, or 8883 with TLS."""
    u = urlparse(broker)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker URL {broker!r}: use mqtt://host:port or mqtts://host:port")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "localhost", u.port or (8883 if tls else 1883), tls, u.username, u.password


def make_client(
    client_id: str,
    *,
    v5: bool,
    persistent: bool,
    username: str | None,
    password: str | None,
    tls: bool,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
) -> paho.Client:
    """A paho client with manual acks and no limit on queued messages; the caller sets the callbacks."""
    kw: dict[str, Any] = {
        "callback_api_version": CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
        "manual_ack": True,
    }
    if not v5:
        kw["clean_session"] = not persistent
    c = paho.Client(**kw)
    c.suppress_exceptions = True
    c.max_queued_messages_set(0)
    if username:
        c.username_pw_set(username, password)
    if tls:
        c.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED)
    c.reconnect_delay_set(1, 30)
    return c


def connect_async(
    client: paho.Client, host: str, port: int, *, v5: bool, persistent: bool, receive_max: int
) -> None:
    """Start connecting (the network loop does it): MQTT 5 with a day-long session if persistent and
    at most ``receive_max`` un-acknowledged messages in flight to us."""
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86400 if persistent else 0
        props.ReceiveMaximum = receive_max  # un-acknowledged messages the broker may send us
        client.connect_async(host, port, 30, clean_start=not persistent, properties=props)
    else:
        client.connect_async(host, port, 30)
