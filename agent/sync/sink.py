"""Outbox sinks besides MQTT: a small interface, a registry and one driver thread per sink.

A sink is anything with ``name``, ``connect()``, ``send(batch)`` and ``close()`` (:class:`Sink`). A
plugin module defines one and calls :func:`register_sink` with a type name and a factory; a
``[[sinks]]`` config entry names that type (``type = "..."``), the messages it takes (``kinds``), its
batch size, rate (token bucket) and backoff. Nothing imports the plugin by a string: whatever
imports it (the plugin list, a test) registers it.

Delivery state is per sink and costs no row per message: a sink's cursor (``sink_cursor``, what
``outbox``) is the last outbox ``seq`` it has acknowledged; rows of kinds it does not take are never
kept for it. ``send`` returns the seqs the sink acknowledged (``acked``): the cursor moves to the end
of the acknowledged prefix of the batch, in one writer write per batch; the rest go again. A raised
exception closes the sink and retries after its backoff (``agent/backoff.py``). Retention removes a
delivered outbox row only once every configured sink's cursor has passed it (see
:func:`min_cursor`). MQTT keeps its own per-row state and driver (agent/sync/publisher.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from agent.backoff import Backoff, TokenBucket
from agent.errors import ConfigError
from agent.sync import outbox
from agent.sync.config import SinkConfig

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.store.writer import Writer

log = logging.getLogger(__name__)

CURSOR = "outbox"  # sink_cursor.what of an outbox sink's cursor


class Message(NamedTuple):
    """One outbox message as a sink gets it; ``payload`` is the JSON text as stored."""

    seq: int
    kind: str  # summary | health | event
    topic: str
    payload: str


class Sink(Protocol):
    """What a sink implements. ``send`` returns the seqs it acknowledged (all of them, a prefix, or
    none); raising means "not delivered, try again after the backoff" (the driver then closes it)."""

    name: str

    def connect(self) -> None: ...

    def send(self, batch: Sequence[Message]) -> Sequence[int]: ...

    def close(self) -> None: ...


#: type name -> factory(its [[sinks]] entry, the whole config) -> Sink
SinkFactory = Callable[[SinkConfig, "AgentConfig"], Sink]
_REGISTRY: dict[str, SinkFactory] = {}


def register_sink(type_name: str, factory: SinkFactory) -> None:
    """Make ``type = "<type_name>"`` usable in ``[[sinks]]`` (call it at the plugin module's top level)."""
    _REGISTRY[type_name] = factory


def sink_types() -> list[str]:
    return sorted(_REGISTRY)


def build_sinks(
    cfg: AgentConfig, writer: Writer, reader: Callable[[], sqlite3.Connection]
) -> list[SinkRunner]:
    """The drivers for ``cfg.sinks``; a ``ConfigError`` for an unknown type or a name used twice."""
    runners: list[SinkRunner] = []
    seen: set[str] = set()
    for i, sc in enumerate(cfg.sinks):
        factory = _REGISTRY.get(sc.type)
        if factory is None:
            raise ConfigError(
                f"sinks[{i}]: unknown sink type {sc.type!r}",
                f"registered types: {', '.join(sink_types()) or 'none'}; a sink's module must be imported "
                "(it calls register_sink) before the agent starts",
            )
        if sc.sink_name in seen or sc.sink_name == "mqtt":
            raise ConfigError(
                f"sinks[{i}]: sink name {sc.sink_name!r} is used twice (or is the reserved 'mqtt')",
                "give each [[sinks]] entry its own `name`",
            )
        seen.add(sc.sink_name)
        runners.append(SinkRunner(sc, factory(sc, cfg), writer, reader))
    return runners


def cursor(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM sink_cursor WHERE sink = ? AND what = ?", (name, CURSOR)).fetchone()
    return int(row[0]) if row else 0


def min_cursor(conn: sqlite3.Connection, names: Sequence[str]) -> int | None:
    """The lowest cursor of ``names`` (None with no sinks): rows above it are still wanted by one."""
    return min((cursor(conn, n) for n in names), default=None)


class SinkRunner:
    """Drives one sink in its own thread: outbox rows past its cursor -> ``send`` -> cursor."""

    def __init__(
        self, cfg: SinkConfig, sink: Sink, writer: Writer, reader: Callable[[], sqlite3.Connection]
    ) -> None:
        self.cfg, self.sink, self.writer, self.reader = cfg, sink, writer, reader
        self.name = cfg.sink_name
        self.kinds = tuple(cfg.kinds)
        self.backoff = Backoff(cfg.retry_initial_s, max(cfg.retry_initial_s, cfg.retry_max_s))
        self.bucket = TokenBucket(cfg.rate_per_s, cfg.batch)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.sent = 0
        self.acked = 0
        self.failures = 0
        self.last_error: str | None = None
        self.cursor = 0  # acknowledged up to here (committed or handed to the writer)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)
            self._thread = None

    def pending(self, conn: sqlite3.Connection) -> int:
        marks = ",".join("?" * len(self.kinds))
        return conn.execute(
            f"SELECT COUNT(*) FROM outbox WHERE seq > ? AND kind IN ({marks})",
            (cursor(conn, self.name), *self.kinds),
        ).fetchone()[0]

    def health(self) -> dict[str, Any]:
        try:
            conn = self.reader()
            try:
                backlog: int | None = self.pending(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            backlog = None
        return {
            "type": self.cfg.type,
            "connected": self.connected,
            "cursor": self.cursor,
            "backlog": backlog,
            "sent": self.sent,
            "acked": self.acked,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    # -- the thread ------------------------------------------------------------------------------
    def _fail(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.warning("sink %s: %s", self.name, self.last_error)
        if self.connected:
            self.connected = False
            try:
                self.sink.close()
            except Exception:  # noqa: BLE001 - closing a broken sink may fail too
                log.debug("sink %s: close failed", self.name, exc_info=True)

    def _fetch(self, conn: sqlite3.Connection, limit: int) -> list[Message]:
        marks = ",".join("?" * len(self.kinds))
        rows = conn.execute(
            f"SELECT o.seq, o.kind, o.topic, p.payload FROM outbox o JOIN outbox_payload p ON p.seq = o.seq "
            f"WHERE o.seq > ? AND o.kind IN ({marks}) ORDER BY o.seq LIMIT ?",
            (self.cursor, *self.kinds, limit),
        ).fetchall()
        return [Message(*r) for r in rows]

    def _mark(self, seq: int) -> None:
        name = self.name

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO sink_cursor (sink, what, value) VALUES (?, ?, ?) ON CONFLICT (sink, what) "
                "DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                (name, CURSOR, seq),
            )

        outbox.submit(self.writer, write, kind=f"sink-{name}", block=True, timeout_s=2.0)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self.reader()
            self.cursor = cursor(conn, self.name)
            while not self._stop.is_set():
                if not self.connected:
                    try:
                        self.sink.connect()
                        self.connected = True
                    except Exception as exc:  # noqa: BLE001 - any failure: back off and retry
                        self._fail("connect", exc)
                        if self.backoff.wait(self._stop):
                            break
                        continue
                self._wake.clear()
                batch = self._fetch(conn, self.cfg.batch)
                if not batch:
                    self._wake.wait(1.0)
                    continue
                n, wait = self.bucket.take_up_to(len(batch))
                if not n:
                    self._stop.wait(wait)
                    continue
                batch = batch[:n]
                try:
                    acked = set(self.sink.send(batch))
                except Exception as exc:  # noqa: BLE001 - not delivered: the batch goes again
                    self._fail("send", exc)
                    if self.backoff.wait(self._stop):
                        break
                    continue
                self.sent += len(batch)
                done = 0
                for m in batch:  # the acknowledged prefix moves the cursor; the rest go again
                    if m.seq not in acked:
                        break
                    done = m.seq
                    self.acked += 1
                if done:
                    self.backoff.reset()
                    self.cursor = done
                    self._mark(done)
                else:
                    self._fail("send", RuntimeError(f"none of {len(batch)} messages acknowledged"))
                    if self.backoff.wait(self._stop):
                        break
        except Exception as exc:  # noqa: BLE001 - the supervisor restarts the thread
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("sink %s failed", self.name)
        finally:
            if conn is not None:
                conn.close()
            if self.connected:
                self.connected = False
                try:
                    self.sink.close()
                except Exception:  # noqa: BLE001
                    log.debug("sink %s: close failed", self.name, exc_info=True)


class SinkGroup:
    """The configured outbox sinks of one agent, started, woken, supervised and stopped together."""

    def __init__(self, runners: list[SinkRunner], writer: Writer) -> None:
        self.runners = runners
        self.writer = writer

    def start(self) -> None:
        """Write each sink's cursor (0 for a new one: it wants what is still stored), drop those of
        sinks no longer configured (they must not hold back retention), then start the runners."""
        names = [r.name for r in self.runners]
        drop = f"DELETE FROM sink_cursor WHERE what = '{CURSOR}'" + (
            f" AND sink NOT IN ({','.join('?' * len(names))})" if names else ""
        )

        def cursors(c: sqlite3.Connection) -> None:
            c.execute(drop, names)
            c.executemany(
                "INSERT OR IGNORE INTO sink_cursor (sink, what, value) VALUES (?, ?, 0)",
                [(n, CURSOR) for n in names],
            )

        outbox.submit(self.writer, cursors, kind="sink-cursors")
        for runner in self.runners:
            runner.start()

    def notify(self) -> None:
        for runner in self.runners:
            runner.notify()

    def stop(self, deadline: float) -> None:
        for runner in self.runners:
            runner.stop(max(0.5, min(3.0, deadline - time.monotonic())))

    def health(self) -> dict[str, Any]:
        return {r.name: r.health() for r in self.runners}

    def supervise(self, restarts: dict[str, int], stopping: bool) -> None:
        """Restart a runner whose thread died (counted in ``restarts``)."""
        for runner in self.runners:
            if not runner.alive and not stopping:
                restarts[runner.name] = restarts.get(runner.name, 0) + 1
                log.error("sink %s died; restarting it (restart %d)", runner.name, restarts[runner.name])
                runner.start()
