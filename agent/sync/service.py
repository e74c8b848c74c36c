"""SyncService: summaries, outbox, MQTT link, commands and retention, wired together.

Lifecycle: ``start()`` then ``stop(deadline_s)``. Threads: the ticker (summary windows, health
messages, retention, and a supervisor that restarts any dead thread), and, when ``mqtt.enabled``,
the link (the connection, paho's network loop and the publisher, outbox -> broker, in one thread)
and the command worker. With MQTT off
the summaries and health messages still go into the outbox and wait there.

Run standalone (a whole sync-only agent, used by the tests and for bench work)::

    python -m agent.sync.service --config FILE [--db PATH]
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import host as _health
from agent.store.db import connect
from agent.store.writer import Writer
from agent.sync import outbox
from agent.sync.birth import birth_message, death_message
from agent.sync.birth import birth_models as birth_models  # re-exported (tests, callers)
from agent.sync.commands import CommandProcessor, check_command_names
from agent.sync.contract import pipeline_projection
from agent.sync.mqtt import MqttLink
from agent.sync.publisher import Publisher
from agent.sync.retention import Retention
from agent.sync.sink import SinkGroup, build_sinks
from agent.sync.summary import SummaryBuilder
from agent.sync.topics import Topics
from agent.timefmt import iso_utc

if TYPE_CHECKING:  # annotations only: the whole config sits above the parts
    from agent.config import AgentConfig

log = logging.getLogger(__name__)


class SyncService:
    """Store-and-forward to the city's broker. See the module docstring and docs/mqtt.md."""

    def __init__(
        self,
        cfg: AgentConfig,
        db_path: str | Path,
        writer: Writer,
        status: Callable[[], dict] | None = None,
        *,
        retention_interval_s: float = 0.25,
    ) -> None:
        self.cfg = cfg
        self.db_path = Path(db_path)
        self.writer = writer
        self.status = status
        self.retention_interval_s = retention_interval_s
        self.topics = Topics(cfg.mqtt.topic_prefix, cfg.device.site, cfg.device.id)
        check_command_names(cfg.mqtt.commands)
        self.builder = SummaryBuilder(
            interval_s=cfg.summary.interval_s,
            writer=writer,
            reader=self._reader,
            topics=self.topics,
            catchup_windows=cfg.summary.catchup_windows,
            flush_timeout_s=cfg.summary.flush_timeout_s,
            small_counts=cfg.privacy.small_counts,
        )
        self.retention = Retention(cfg.storage.max_db_mb, writer, self._reader, self.topics)
        self.retention.reserve = Path(str(db_path) + "-reserve")  # beside the database (keep_reserve)
        writer.relief = self.retention.relieve  # prunes on the writer's connection when the disk is full
        writer.guard = self.retention.guard  # the file grows only into room the WAL will not need
        conn = self._reader()
        try:
            self._session = outbox.state_value(conn, "session")
        finally:
            conn.close()
        self.link: MqttLink | None = None
        self.publisher: Publisher | None = None
        self.commands: CommandProcessor | None = None
        if cfg.mqtt.enabled:
            self._build_mqtt()
        #: other sinks (the NGSI-LD context broker), each with its own delivery state in sink_queue
        self.sinks: dict[str, Any] = {}
        if getattr(cfg, "ngsi_ld", None) is not None and cfg.ngsi_ld.enabled:
            from agent.ngsi_ld.sink import SINK, NgsiLdSink

            self.sinks[SINK] = NgsiLdSink(cfg, writer, self._reader)
        #: outbox sinks from [[sinks]] (types registered by plugins), each with its cursor in sink_cursor
        self.outbox_sinks = SinkGroup(build_sinks(cfg, writer, self._reader), writer)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []  # the ticker (summaries, health) and retention
        self.last_progress = time.monotonic()
        self.last_error: str | None = None
        self.restarts: dict[str, int] = {}
        self._next_health = 0.0

    def _build_mqtt(self) -> None:
        """The command processor, the link and its publisher (``mqtt.enabled``)."""
        cfg = self.cfg
        self.commands = CommandProcessor(
            self, self.topics, cfg.mqtt.commands, self._publish_reply, lambda: self._session
        )
        self.link = MqttLink(
            cfg.mqtt,
            cfg.device.id,
            self.topics,
            next_session=self._next_session,
            birth=self._birth,
            death=self._death,
            on_message=self._on_message,
            on_state=self._on_state,
            subscriptions=self.commands.filters() + [self.topics.status],
        )
        # the publisher is the link's driver (Publisher.start): the link's one thread runs paho's
        # network loop and the publisher, and hands it every PUBACK directly
        self.publisher = Publisher(cfg.mqtt, self.link, self.writer, self._reader)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> SyncService:
        self._stop.clear()
        if self.publisher and self.link and self.commands:
            self.commands.start()
            self.publisher.start()
            self.link.start()
        for sink in self.sinks.values():
            sink.start()
        self.outbox_sinks.start()
        loops = ((self._tick_loop, "sync-ticker"), (self._retention_loop, "sync-retention"))
        self._threads = [threading.Thread(target=fn, name=name, daemon=True) for fn, name in loops]
        for t in self._threads:
            t.start()
        return self

    def stop(self, deadline_s: float = 10.0) -> None:
        """Publish what can be published within ``deadline_s``, publish offline status, disconnect."""
        end = time.monotonic() + deadline_s
        self._stop.set()
        for sink in self.sinks.values():
            sink.stop(max(0.5, min(3.0, end - time.monotonic())))
        self.outbox_sinks.stop(end)
        for t in self._threads:
            t.join(max(0.5, min(5.0, end - time.monotonic())))
        self._threads = []
        if self.publisher and self.link:
            if self.link.connected.is_set():
                self.publisher.drain(end - min(2.0, deadline_s * 0.3))
            if self.commands:
                self.commands.stop(0.5)
            self.link.stop(max(0.5, end - time.monotonic()))
            self.publisher.stop(max(0.5, end - time.monotonic()))

    # -- public helpers --------------------------------------------------------------------------
    def models_ready(self) -> None:
        """The pipeline loaded its models: publish the birth again so it names the active accelerator
        (the birth at connect may precede the models: accelerator null, models {})."""
        if self.link is not None:
            self.link.republish_birth()

    def event_writes(self, type_: str, data: dict[str, Any]) -> Callable[[Any], int]:
        """The write that queues an event (an alert) for the hub: live priority, through the outbox,
        with a seq. Run it in the writer's transaction, next to the part's own rows, so the two are
        stored together or not at all; then call :meth:`notify`."""
        body = {
            "device": self.topics.device,
            "site": self.topics.site,
            "ts": iso_utc(time.time()),
            "type": type_,
            "data": data,
        }
        topic = self.topics.kind("event")
        return lambda c: outbox.enqueue(c, topic, "event", body, priority=outbox.LIVE)

    def notify(self) -> None:
        """Wake the publisher and the outbox sinks: a live message was queued."""
        if self.publisher:
            self.publisher.notify()
        self.outbox_sinks.notify()

    def replay(self, from_seq: int, to_seq: int) -> dict[str, Any]:
        """Re-send stored messages in ``[from_seq, to_seq]`` (the replay command)."""
        conn = self._reader()
        try:
            present = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE seq BETWEEN ? AND ?", (from_seq, to_seq)
            ).fetchone()[0]
            missing = outbox.missing_in_range(conn, from_seq, to_seq)
            last = conn.execute("SELECT MAX(seq) FROM outbox").fetchone()[0]
        finally:
            conn.close()
        if self.publisher and present:
            # only what is stored counts against the replay queue's bound (a range past the last seq
            # asks for nothing more); ReplayQueue.add merges it with those queued or refuses it: busy
            self.publisher.replay(from_seq, min(to_seq, last or to_seq))
        return {"from_seq": from_seq, "to_seq": to_seq, "queued": present, "missing": missing}

    def health(self) -> dict[str, Any]:
        conn = self._reader()
        try:
            st = outbox.stats(conn)
        finally:
            conn.close()
        link, pub = self.link, self.publisher
        return {
            "enabled": self.cfg.mqtt.enabled,
            "connected": bool(link and link.connected.is_set()),
            "broker": f"{self.cfg.mqtt.host}:{self.cfg.mqtt.effective_port}"
            if self.cfg.mqtt.enabled
            else None,
            "last_error": (link.last_error if link else None)
            or (pub.last_error if pub else None)
            or self.last_error
            or self.builder.last_error
            or self.retention.last_error,
            "session": link.session if link and link.session is not None else self._session,
            "reconnects": link.reconnects if link else 0,
            "connect_attempts": link.attempts if link else 0,
            "next_attempt_in_s": round(link.next_attempt_in, 1)
            if link and link.next_attempt_in and not link.connected.is_set()
            else None,
            "backlog": st["pending"],
            "backlog_by_kind": st["pending_by_kind"],
            "oldest_pending_created": st["oldest_pending_created"],
            "in_flight": len(pub.inflight) if pub else 0,
            "published": pub.published if pub else 0,
            "acked": pub.acked if pub else 0,
            "rejected": st["rejected"],
            "last_seq": st["last_seq"],
            "pruned": st["pruned"],
            "gaps": st["gaps"],
            "summaries_written": self.builder.written,
            "sinks": {name: sink.health() for name, sink in self.sinks.items()} | self.outbox_sinks.health(),
            "restarts": dict(self.restarts),
            "uptime_s": _health.agent_uptime_s(),
        }

    # -- internals -------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        return connect(self.db_path, readonly=True)

    def _live_status(self) -> dict[str, Any]:
        if self.status is None:
            return {}
        try:
            st = self.status()
            return st if isinstance(st, dict) else {}
        except Exception as exc:  # noqa: BLE001 - the pipeline's status must not break sync
            log.warning("status callback failed: %s", exc)
            return {"status_error": str(exc)}

    def _next_session(self) -> int:
        self._session += 1
        s = self._session
        if outbox.submit(
            self.writer,
            lambda c: c.execute("UPDATE sync_state SET value = MAX(value, ?) WHERE key = 'session'", (s,)),
            kind="sync-session",
            block=True,
            timeout_s=2.0,
        ):
            self.writer.flush(2.0)
        return s

    def _birth(self, session: int) -> dict[str, Any]:
        return birth_message(self.cfg, self.topics, session, self._live_status(), self._reader)

    def _death(self, session: int) -> dict[str, Any]:
        return death_message(self.topics, session, stopping=self._stop.is_set())

    def _on_state(self, up: bool) -> None:
        if self.publisher:
            self.publisher.on_state(up)

    def _on_message(self, topic: str, payload: bytes, properties: Any) -> None:
        if topic == self.topics.status:  # our own retained status: fix a stale last will
            try:
                doc = json.loads(payload)
            except ValueError:
                return
            link = self.link
            if (
                link
                and link.connected.is_set()
                and isinstance(doc, dict)
                and doc.get("state") == "offline"
                and doc.get("session") != link.session
                and not self._stop.is_set()
            ):
                log.info(
                    "a stale offline status (session %s) replaced our birth: publishing it again",
                    doc.get("session"),
                )
                link.republish_birth()
            return
        if self.commands:
            self.commands.submit(topic, payload, properties)

    def _publish_reply(self, topic: str, payload: bytes, corr: bytes | None) -> None:
        if not self.link:
            return
        props = None
        if corr is not None and self.cfg.mqtt.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = corr
        if self.link.publish(topic, payload, qos=1, retain=False, properties=props) is None:
            log.info("reply on %s not sent: not connected", topic)

    def _queue_health(self) -> None:
        conn = self._reader()
        try:
            h = _health.collect(conn)
        finally:
            conn.close()
        body = {
            "device": self.topics.device,
            "site": self.topics.site,
            "ts": iso_utc(time.time()),
            "health": h,
            "sync": {
                k: v
                for k, v in self.health().items()
                if k in ("connected", "backlog", "in_flight", "reconnects", "last_error", "session")
            },
            "writer": self.writer.stats(),
        }
        pipeline = pipeline_projection(self._live_status())
        if pipeline:  # absent when the sync service runs without a pipeline (tests, the hub's own tools)
            body["pipeline"] = pipeline
        topic = self.topics.kind("health")
        body = json.loads(json.dumps(body, default=str))
        if outbox.submit(
            self.writer,
            lambda c: outbox.enqueue(c, topic, "health", body, priority=outbox.LIVE),
            kind="health",
        ):
            self.notify()

    def _supervise(self) -> None:
        self.outbox_sinks.supervise(self.restarts, self._stop.is_set())
        if not (self.link and self.publisher and self.commands):
            return
        for name, part in (("link", self.link), ("publisher", self.publisher), ("commands", self.commands)):
            if not part.alive and not self._stop.is_set():
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log.error("sync thread %s died; restarting it (restart %d)", name, self.restarts[name])
                part.start()

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for what, fn in (
                ("summary", self._tick_summary),
                ("health", self._tick_health),
                ("supervise", self._supervise),
            ):
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - one failing duty must not stop the others
                    self.last_error = f"{what}: {type(exc).__name__}: {exc}"
                    log.exception("sync %s failed", what)
            self.last_progress = time.monotonic()
            until_summary = self.builder.next_due() - time.time()
            self._stop.wait(max(0.05, min(1.0, until_summary, self._next_health - now)))

    def _tick_summary(self) -> None:
        if self.builder.run_due():
            self.notify()

    def _tick_health(self) -> None:
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + self.cfg.mqtt.health_interval_s
            self._queue_health()

    def _retention_loop(self) -> None:
        """Retention on its own schedule: a summary waiting on a slow or full disk never delays it."""
        while not self._stop.wait(self.retention_interval_s):
            try:
                if not self.writer.disk_full:
                    self.retention.keep_reserve(self.db_path)
                if self.retention.run()["removed"] and self.publisher:
                    self.publisher.notify()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                self.retention.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("retention failed")
