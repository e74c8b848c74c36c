"""Commands from the hub on ``.../cmd/{name}``, each answered on ``.../cmd/{name}/reply``.

A request is JSON ``{"id": "<correlation id>", "args": {...}}`` (MQTT 5 Correlation Data works
too and is copied to the reply). Messages are taken off paho's thread into a small bounded queue
and handled by one worker thread, so a slow or malformed command can never block the connection or
the pipeline. Every request gets exactly one reply: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code", "message"}}``. Which commands are accepted is configured
(``mqtt.commands``); other parts of the agent can add commands with :func:`register_command`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.errors import ConfigError
from agent.sync.topics import SCHEMA_VERSION, SCHEMAS, Topics
from agent.timefmt import iso_utc

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64 * 1024
#: seqs are SQLite integers (signed 64 bit): a larger number cannot name a stored message
MAX_SEQ = 2**63 - 1


class CommandError(Exception):
    """A request the agent will not carry out; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    read_only: bool
    doc: str


_COMMANDS: dict[str, Command] = {}


def register_command(name: str, handler: Handler, *, read_only: bool, doc: str) -> None:
    """Add a command. ``handler(ctx, args) -> result dict``; raise :class:`CommandError` for bad args."""
    _COMMANDS[name] = Command(name, handler, read_only, doc)


def known_commands() -> dict[str, Command]:
    return dict(_COMMANDS)


def check_command_names(names: list[str]) -> None:
    """``mqtt.commands``: a ``ConfigError`` naming any command this agent does not know."""
    unknown = [c for c in names if c not in _COMMANDS]
    if unknown:
        raise ConfigError(
            f"mqtt.commands: unknown command(s) {', '.join(unknown)}",
            f"known commands: {', '.join(sorted(_COMMANDS))}",
        )


def _int_arg(args: dict[str, Any], key: str) -> int:
    v = args.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise CommandError("bad_request", f"args.{key} must be an integer, got {json.dumps(v)}")
    if v < 1:
        raise CommandError("bad_request", f"args.{key} must be >= 1")
    if v > MAX_SEQ:
        raise CommandError("bad_request", f"args.{key} must be < 2^63 (a seq is a signed 64-bit integer)")
    return v


class ReplayQueue:
    """The replays waiting to be re-sent: ranges of seqs, overlapping and adjacent ones merged, at
    most ``max_messages`` seqs in all (a request that would go over is refused with ``busy``; the
    publisher sends them through the same backfill cap as the backlog). A request for seqs that this
    round of replays has already re-sent does not send them again (a hub that repeats its request
    while the first is still being served gets each message once); once the queue is empty, a new
    request re-sends everything it names. Thread-safe: requests come from the command worker, the
    publisher takes from the front."""

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        self._ranges: list[list[int]] = []  # sorted, disjoint, not adjacent
        self._sent: list[list[int]] = []  # taken since the queue was last empty
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ranges)

    def queued(self) -> int:
        """How many seqs wait to be re-sent."""
        with self._lock:
            return _count(self._ranges)

    def add(self, a: int, b: int) -> int:
        """Queue ``a..b``; returns how many seqs were new (0: all already queued or re-sent). Raises
        :class:`CommandError` ``busy`` when the merged queue would hold more than the bound."""
        with self._lock:
            before = _count(self._ranges)
            merged = _union(self._ranges, _subtract([a, b], self._sent))
            after = _count(merged)
            if after > self.max_messages:
                raise CommandError(
                    "busy",
                    f"{before} messages already wait to be re-sent; this replay would make {after}, more than"
                    f" {self.max_messages} (mqtt.max_replay): ask again when the earlier ones are done",
                )
            self._ranges = merged
            return after - before

    def first(self) -> tuple[int, int] | None:
        with self._lock:
            return (self._ranges[0][0], self._ranges[0][1]) if self._ranges else None

    def done_until(self, seq: int) -> None:
        """Everything queued up to ``seq`` has been taken (the front range starts after it, or goes)."""
        with self._lock:
            while self._ranges and self._ranges[0][0] <= seq:
                lo, hi = self._ranges[0]
                self._sent = _union(self._sent, [[lo, min(hi, seq)]])
                if hi <= seq:
                    self._ranges.pop(0)
                else:
                    self._ranges[0][0] = seq + 1
            if not self._ranges:
                self._sent = []


def _count(ranges: list[list[int]]) -> int:
    return sum(b - a + 1 for a, b in ranges)


def _union(ranges: list[list[int]], more: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted([list(r) for r in ranges] + [list(r) for r in more]):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _subtract(r: list[int], ranges: list[list[int]]) -> list[list[int]]:
    pieces, lo = [], r[0]
    for a, b in ranges:
        if b < lo or a > r[1]:
            continue
        if a > lo:
            pieces.append([lo, a - 1])
        lo = max(lo, b + 1)
    if lo <= r[1]:
        pieces.append([lo, r[1]])
    return pieces


# -- the built-in commands (ctx is the SyncService) ------------------------------------------------


def _ping(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    h = ctx.health()
    return {
        "pong": True,
        "session": h["session"],
        "last_seq": h["last_seq"],
        "backlog": h["backlog"],
        "uptime_s": h["uptime_s"],
    }


def _config_get(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    return {"config": ctx.cfg.redacted(), "config_hash": ctx.cfg.config_hash()}


def _health_get(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    return {"health": ctx.health()}


def _rebirth(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    ctx.link.republish_birth()
    return {"republished": True}


def _replay(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    a, b = _int_arg(args, "from_seq"), _int_arg(args, "to_seq")
    if b < a:
        raise CommandError("bad_request", "args.to_seq must be >= args.from_seq")
    limit = ctx.cfg.mqtt.max_replay
    if b - a + 1 > limit:
        raise CommandError(
            "too_large", f"a replay may ask for at most {limit} messages (mqtt.max_replay); split the range"
        )
    return ctx.replay(a, b)  # ReplayQueue.add may refuse it with "busy"


register_command("ping", _ping, read_only=True, doc="Answer with the session, last seq, backlog and uptime.")
register_command(
    "config/get", _config_get, read_only=True, doc="The effective configuration, secrets redacted."
)
register_command("health/get", _health_get, read_only=True, doc="The sync service's health.")
register_command("rebirth", _rebirth, read_only=True, doc="Publish the birth (status online) again.")
register_command(
    "replay",
    _replay,
    read_only=False,
    doc="Re-send the stored messages with from_seq <= seq <= to_seq; the reply lists what is no longer stored and why.",
)


class CommandProcessor:
    """Receives command messages (any thread) and answers them from one worker thread.

    Args:
        ctx: passed to handlers (the SyncService).
        topics: the device's topics.
        allowed: accepted command names.
        reply: ``reply(topic, payload_bytes, correlation_data)`` publishes a reply.
        session: returns the current session id (for the reply).
    """

    def __init__(
        self,
        ctx: Any,
        topics: Topics,
        allowed: list[str],
        reply: Callable[[str, bytes, bytes | None], Any],
        session: Callable[[], int | None],
        max_queue: int = 32,
    ) -> None:
        self.ctx = ctx
        self.topics = topics
        self.allowed = set(allowed)
        self._reply = reply
        self._session = session
        self._q: queue.Queue[tuple[str, bytes, bytes | None] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.handled = 0
        self.errors = 0
        self.last_progress = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-commands", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def stop(self, timeout_s: float = 2.0) -> None:
        if self._thread:
            try:
                self._q.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout_s)
            self._thread = None

    def filters(self) -> list[str]:
        return self.topics.command_filters(sorted(self.allowed))

    def submit(self, topic: str, payload: bytes, properties: Any = None) -> None:
        """Called from paho's thread: never blocks. A full queue gets a 'busy' reply."""
        corr = getattr(properties, "CorrelationData", None) if properties is not None else None
        prefix = self.topics.base + "/cmd/"
        if not topic.startswith(prefix) or topic.endswith("/reply"):
            return
        try:
            self._q.put_nowait((topic[len(prefix) :], payload, corr))
        except queue.Full:
            self._send(
                topic[len(prefix) :],
                None,
                corr,
                error=("busy", "too many commands queued; try again shortly"),
            )

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            name, payload, corr = item
            try:
                self.handle(name, payload, corr)
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("command %s crashed the handler", name)
            self.last_progress = time.monotonic()

    def handle(self, name: str, payload: bytes, corr: bytes | None = None) -> dict[str, Any]:
        """Parse, check and run one command; publish and return the reply document."""
        req_id: Any = None
        try:
            if len(payload) > MAX_PAYLOAD:
                raise CommandError("too_large", f"request is {len(payload)} bytes; at most {MAX_PAYLOAD}")
            try:
                req = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CommandError("bad_json", f"request is not JSON: {exc}") from None
            if not isinstance(req, dict):
                raise CommandError(
                    "bad_request", 'request must be a JSON object like {"id": "...", "args": {...}}'
                )
            req_id = req.get("id")
            if req_id is not None and not isinstance(req_id, (str, int)):
                req_id = None
                raise CommandError("bad_request", "id must be a string or an integer")
            args = req.get("args", {})
            if not isinstance(args, dict):
                raise CommandError("bad_request", "args must be a JSON object")
            cmd = _COMMANDS.get(name)
            if cmd is None:
                raise CommandError(
                    "unknown_command", f"unknown command {name!r}; known: {', '.join(sorted(_COMMANDS))}"
                )
            if name not in self.allowed:
                raise CommandError(
                    "disabled", f"command {name!r} is not enabled on this unit (mqtt.commands)"
                )
            result = cmd.handler(self.ctx, args)
        except CommandError as exc:
            self.errors += 1
            return self._send(name, req_id, corr, error=(exc.code, exc.message))
        except Exception as exc:  # noqa: BLE001 - a handler bug is an error reply, not a crash
            self.errors += 1
            log.exception("command %s failed", name)
            return self._send(name, req_id, corr, error=("failed", f"{type(exc).__name__}: {exc}"))
        self.handled += 1
        return self._send(name, req_id, corr, result=result)

    def _send(
        self,
        name: str,
        req_id: Any,
        corr: bytes | None,
        *,
        result: dict | None = None,
        error: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SCHEMAS["reply"],
            "schema_version": SCHEMA_VERSION,
            "device": self.topics.device,
            "site": self.topics.site,
            "ts": iso_utc(time.time()),
            "session": self._session() or 0,
            "command": name,
            "id": req_id,
            "ok": error is None,
        }
        if error is None:
            doc["result"] = result or {}
        else:
            doc["error"] = {"code": error[0], "message": error[1]}
        safe = name if all(c.isalnum() or c in "/_-" for c in name) and name else "invalid"
        try:
            self._reply(self.topics.reply(safe), json.dumps(doc, default=str).encode(), corr)
        except Exception:  # noqa: BLE001
            log.exception("reply to %s could not be published", name)
        return doc
