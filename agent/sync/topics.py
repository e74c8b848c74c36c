"""The topic tree: ``{prefix}/{site}/{device}/summary|status|health|event`` and ``.../cmd/{name}[/reply]``.

One place builds and parses topics, for the agent and for the hub (docs/mqtt.md describes them).
"""

from __future__ import annotations

from dataclasses import dataclass

#: message kinds published by a device, and whether they carry a ``seq`` (go through the outbox)
KINDS = ("summary", "status", "health", "event")
SEQ_KINDS = ("summary", "health", "event")

#: the contract version (semver, see agent.sync.contract); every payload has ``"schema_version"``
SCHEMA_VERSION = "2.1.0"
#: schema ids: every payload has ``"schema": "<id>"`` (its major) and a JSON Schema in docs/schemas/<kind>.schema.json
SCHEMAS = {
    k: f"edge-agent/{k}/{SCHEMA_VERSION.split('.')[0]}"
    for k in ("summary", "status", "health", "event", "command", "reply")
}


@dataclass(frozen=True)
class Topics:
    """Topics of one device."""

    prefix: str
    site: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.device}"

    def kind(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown message kind {kind!r}")
        return f"{self.base}/{kind}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/cmd/{name}/reply"

    def command_filters(self, names: list[str] | tuple[str, ...]) -> list[str]:
        """Subscriptions for the accepted commands: ``cmd/+`` plus ``cmd/GROUP/+`` for names like ``config/get``.

        Replies (``cmd/NAME/reply``) never match these filters, so the agent does not hear itself.
        """
        filters = [f"{self.base}/cmd/+"]
        for group in sorted({n.split("/")[0] for n in names if "/" in n}):
            filters.append(f"{self.base}/cmd/{group}/+")
        return filters


@dataclass(frozen=True)
class Parsed:
    site: str
    device: str
    kind: str  # summary|status|health|event|cmd|reply
    command: str | None = None


def parse(topic: str, prefix: str) -> Parsed | None:
    """Split a device topic under ``prefix``; None if it is not one of ours."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) < 3:
        return None
    site, device, rest = parts[0], parts[1], parts[2:]
    if len(rest) == 1 and rest[0] in KINDS:
        return Parsed(site, device, rest[0])
    if rest[0] == "cmd" and len(rest) >= 2:
        if rest[-1] == "reply" and len(rest) >= 3:
            return Parsed(site, device, "reply", "/".join(rest[1:-1]))
        return Parsed(site, device, "cmd", "/".join(rest[1:]))
    return None
