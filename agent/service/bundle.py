"""Building the config dict for ``edge-agent provision``: the bundle, flags, ``--set KEY=VALUE``.

The provisioning bundle is a JSON file (often on a USB stick)::

    {"version": 1, "config": { ...the config file's tables, as JSON... }, "api_token": "optional"}

``config`` is passed through as it is: sections owned by other parts of the agent (mqtt, sensors,
cameras[].analytics) are validated by their own schema, never re-interpreted here. Flags that
fill such sections (``--broker``, ``--ca-cert``, ...) find their key in the schema by a list of
candidate names (:data:`FLAG_KEYS`), so a renamed key is a clear error rather than a silent miss.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUNDLE_VERSION = 1
BUNDLE_KEYS = {"version", "config", "api_token", "comment"}

# Flag -> candidate key paths in the schema (the first that exists is used).
FLAG_KEYS: dict[str, list[str]] = {
    "broker": ["mqtt.url", "mqtt.broker_url", "mqtt.broker", "mqtt.uri"],
    "username": ["mqtt.username", "mqtt.user"],
    "password": ["mqtt.password"],
    "password_file": ["mqtt.password_file"],
    "ca_cert": [
        "mqtt.ca_file",
        "mqtt.cafile",
        "mqtt.ca_certs",
        "mqtt.tls.ca_file",
        "mqtt.tls.cafile",
        "mqtt.tls.ca_certs",
    ],
    "client_cert": [
        "mqtt.cert_file",
        "mqtt.certfile",
        "mqtt.client_cert",
        "mqtt.tls.cert_file",
        "mqtt.tls.certfile",
        "mqtt.tls.client_cert",
    ],
    "client_key": [
        "mqtt.key_file",
        "mqtt.keyfile",
        "mqtt.client_key",
        "mqtt.tls.key_file",
        "mqtt.tls.keyfile",
        "mqtt.tls.client_key",
    ],
    "mqtt_enabled": ["mqtt.enabled"],
    "host": ["mqtt.host"],
    "port": ["mqtt.port"],
    "tls": ["mqtt.tls.enabled", "mqtt.tls"],
    "transport": ["mqtt.transport"],
    "token_file": ["api.token_file"],
}
URL_KEYS = ("url", "broker_url", "broker", "uri")
BROKER_SCHEMES = ("mqtt", "mqtts", "ws", "wss")

_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


class _Item(str):
    """A ``[name]`` path part: an item of a list, picked by its name."""


# -- bundle ----------------------------------------------------------------------------------------


def load_bundle(path: Path) -> tuple[dict[str, Any], str | None]:
    """Read a bundle; return (config dict, api_token). Raises ConfigError naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"bundle {path} does not exist", "check the path (is the USB stick mounted?)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read bundle {path}: {exc}", "check the file is readable UTF-8 JSON"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "fix the syntax there (a JSON linter helps)",
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f'{path}: a bundle is a JSON object with a "config" object',
            'see docs/install.md, "Provisioning bundle"',
        )
    unknown = sorted(set(doc) - BUNDLE_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown bundle key(s) {', '.join(unknown)} (expected {', '.join(sorted(BUNDLE_KEYS))})",
            'config tables go inside "config"; see docs/install.md',
        )
    version = doc.get("version", BUNDLE_VERSION)
    if version != BUNDLE_VERSION:
        raise ConfigError(
            f"{path}: bundle version {version!r} is not supported (this agent reads version {BUNDLE_VERSION})",
            "make the bundle with this agent's docs/install.md, or update the agent",
        )
    config = doc.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(
            f'{path}: "config" must be a JSON object', 'see docs/install.md, "Provisioning bundle"'
        )
    token = doc.get("api_token")
    if token is not None and not isinstance(token, str):
        raise ConfigError(f'{path}: "api_token" must be a string', "remove it to have one generated")
    return config, token


# -- schema lookups --------------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _schema() -> type[BaseModel]:
    """The config schema (looked up at call time, so tests can substitute an extended one)."""
    import agent.config

    return agent.config.AgentConfig


def schema_has(dotted: str, model: type[BaseModel] | None = None) -> bool:
    """True when ``dotted`` (e.g. ``mqtt.tls.ca_file``) names a field of the config schema."""
    current: type[BaseModel] | None = model or _schema()
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if current is None or part not in current.model_fields:
            return False
        if i < len(parts) - 1:
            current = _model_of(current.model_fields[part].annotation)
    return True


def schema_key(flag: str, model: type[BaseModel] | None = None) -> str | None:
    """The config key a flag sets in this version of the schema (None when it has none)."""
    return next((k for k in FLAG_KEYS[flag] if schema_has(k, model)), None)


def require_key(flag: str, model: type[BaseModel] | None = None) -> str:
    key = schema_key(flag, model)
    if key is None:
        names = ", ".join(FLAG_KEYS[flag])
        raise ConfigError(
            f"--{flag.replace('_', '-')}: this version's config schema has no key for it (looked for {names})",
            'set it in the bundle\'s "config" (keys: `edge-agent config example`) or with --set KEY=VALUE',
        )
    return key


# -- setting values by path ------------------------------------------------------------------------


def parse_path(path: str) -> list[str | int]:
    """``cameras[north].analytics.lines`` -> ["cameras", "north", "analytics", "lines"]; ``[0]`` -> 0."""
    parts: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(path):
        between = path[pos : m.start()]
        if between not in ("", "."):
            raise ConfigError(
                f"--set {path}: cannot read the key path",
                "write it like mqtt.port or cameras[north].detect_fps",
            )
        word, bracket = m.group(1), m.group(2)
        if bracket is not None:
            parts.append(int(bracket) if bracket.isdigit() else _Item(bracket))
        else:
            parts.append(word)
        pos = m.end()
    if not parts or path[pos:]:
        raise ConfigError(
            f"--set {path}: cannot read the key path", "write it like mqtt.port or cameras[north].detect_fps"
        )
    return parts


def _find_item(items: list[Any], key: str | int, path: str) -> Any:
    if isinstance(key, int):
        if key >= len(items):
            raise ConfigError(
                f"{path}: index {key} is out of range ({len(items)} item(s))",
                "add the item first (e.g. --camera NAME=SOURCE) or use its name",
            )
        return items[key]
    for item in items:
        if isinstance(item, dict) and key in (item.get("name"), item.get("id")):
            return item
    raise ConfigError(
        f"{path}: no item named {key!r}", "add it first (e.g. --camera NAME=SOURCE), then set its keys"
    )


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at ``path`` in ``data``, creating tables on the way."""
    parts = parse_path(path) if isinstance(path, str) else path
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if last:
                raise ConfigError(f"{path}: cannot replace a whole list item", "set one of its keys instead")
            node = _find_item(node, part, path)
            continue
        if not isinstance(node, dict) or isinstance(part, int):
            raise ConfigError(
                f"{path}: {'.'.join(map(str, parts[:i])) or 'top level'} is not a table",
                "check the key path against `edge-agent config example`",
            )
        if last:
            node[part] = value
        elif part not in node and isinstance(parts[i + 1], (int, _Item)):
            raise ConfigError(
                f"{path}: there is no {part} item {parts[i + 1]!s}",
                "add it first (e.g. --camera NAME=SOURCE), then set its keys",
            )
        else:
            node = node.setdefault(part, {})


def parse_value(text: str) -> Any:
    """A ``--set`` value: any TOML value (``30``, ``true``, ``[1, 2]``, ``{x = 1}``, ``"text"``), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def upsert_camera(data: dict[str, Any], spec: str) -> None:
    """``--camera NAME=SOURCE``: add a camera, or change the source of the one with that name."""
    name, sep, source = spec.partition("=")
    if not sep or not name or not source:
        raise ConfigError(
            f"--camera {spec!r}: expected NAME=SOURCE",
            "e.g. --camera north=/dev/video0 or --camera east=rtsp://10.0.0.5/stream",
        )
    cams = data.setdefault("cameras", [])
    if not isinstance(cams, list):
        raise ConfigError("cameras: must be a list of tables", 'fix the bundle\'s "cameras"')
    for cam in cams:
        if isinstance(cam, dict) and cam.get("name") == name:
            cam["source"] = source
            return
    cams.append({"name": name, "source": source})


# -- broker URL ------------------------------------------------------------------------------------


def check_broker_url(url: Any, where: str) -> list[str]:
    """Raise ConfigError when ``url`` is not a usable broker URL; return warnings."""
    if not isinstance(url, str) or not url:
        raise ConfigError(
            f"{where}: the broker URL must be a non-empty string", "e.g. mqtts://broker.city.example:8883"
        )
    parts = urlsplit(url)
    if parts.scheme not in BROKER_SCHEMES:
        raise ConfigError(
            f"{where}: {url!r} has scheme {parts.scheme or '(none)'!r}; expected one of {', '.join(BROKER_SCHEMES)}",
            "write it like mqtts://broker.city.example:8883 (mqtts/wss for TLS)",
        )
    if not parts.hostname:
        raise ConfigError(
            f"{where}: {url!r} has no host name", "write it like mqtts://broker.city.example:8883"
        )
    try:
        _ = parts.port  # raises ValueError for an out-of-range port
    except ValueError:
        raise ConfigError(
            f"{where}: {url!r} has an invalid port", "use a number 1-65535 after the host, e.g. :8883"
        ) from None
    if parts.password:
        raise ConfigError(
            f"{where}: the broker URL contains a password",
            "give it with --password-file or in the bundle's mqtt table",
        )
    warnings = []
    if parts.scheme in ("mqtt", "ws"):
        warnings.append(
            f"{where}: {url} is not encrypted (use mqtts:// or wss:// unless the network is private)"
        )
    return warnings


def broker_urls(data: dict[str, Any]) -> list[tuple[str, Any]]:
    mqtt = data.get("mqtt")
    if not isinstance(mqtt, dict):
        return []
    return [(f"mqtt.{k}", mqtt[k]) for k in URL_KEYS if k in mqtt]


def apply_broker(data: dict[str, Any], url: str) -> list[str]:
    """``--broker URL``: set the schema's URL key, or split it into host, port and TLS on/off.

    Also turns MQTT on. Returns warnings (e.g. an unencrypted broker).
    """
    warnings = check_broker_url(url, "--broker")
    key = schema_key("broker")
    if key is not None:
        set_path(data, key, url)
    else:
        host = schema_key("host") or require_key("broker")
        parts = urlsplit(url)
        set_path(data, host, parts.hostname or "")
        port = schema_key("port")
        if parts.port is not None:
            if port is None:
                raise ConfigError(
                    f"--broker {url}: this version's config has no mqtt port key",
                    "leave the port out of the URL",
                )
            set_path(data, port, parts.port)
        tls = schema_key("tls")
        secure = parts.scheme in ("mqtts", "wss")
        if tls is not None:
            set_path(data, tls, secure)
        elif secure:
            raise ConfigError(
                f"--broker {url}: this version's config has no TLS switch",
                "use mqtt:// or set the TLS keys with --set",
            )
        if parts.scheme in ("ws", "wss"):
            transport = schema_key("transport")
            if transport is None:
                raise ConfigError(
                    f"--broker {url}: this agent's MQTT client has no websocket transport",
                    "use mqtts://host:8883 (or mqtt://) instead",
                )
            set_path(data, transport, "websockets")
    enabled = schema_key("mqtt_enabled")
    if enabled:
        set_path(data, enabled, True)
    return warnings
