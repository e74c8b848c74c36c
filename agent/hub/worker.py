"""A hub worker: ``edge-agent hub --broker URL --dsn postgresql://... [--share hub]``.

It subscribes to the units' topics (with ``share="GROUP"`` as the MQTT 5 shared subscription
``$share/GROUP/<topic>``, so N workers split the load and any of them may die), stores every
message through :class:`~agent.hub.ingest.Ingestor` and acknowledges it to the broker only once it
is committed (paho's manual acks: a worker killed mid-batch leaves its messages un-acknowledged,
never half-stored). A second thread repairs gaps: for every open gap of an online unit whose time
has come, one worker (claimed in the database, so several never ask twice) sends ``cmd/replay``,
rate-limited, with exponential backoff and jitter between requests, until the gap closes or the
unit reports the range as no longer stored (then it is ``lost``, with the unit's reason).

Retained statuses are not delivered to shared subscriptions (MQTT 5), so a shared worker also
subscribes to ``{prefix}/+/+/status`` on its own; every worker handles them (idempotent).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from agent.backoff import Backoff, spread
from agent.hub import fleet
from agent.hub.client import connect_async, make_client, parse_broker, prefix_of
from agent.hub.db import HubDB
from agent.hub.ingest import Ingestor, Result
from agent.sync.topics import SCHEMAS
from agent.timefmt import iso_utc

log = logging.getLogger(__name__)


class Hub:
    """One hub worker (see the module docstring).

    Args:
        broker: ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS).
        topic: subscription, e.g. ``city/#``; ``share`` wraps it in ``$share/GROUP/``.
        dsn: the hub database: ``postgresql://...``, ``sqlite:///hub.sqlite`` or a file path.
        prefix: the agents' topic prefix (default: from ``topic``).
        replay: repair gaps by asking units to replay them.
        gap_grace_s: a new hole waits this long before its first request (out-of-order arrival).
        replay_retry_s / replay_retry_max_s: the backoff between requests for one gap.
        replay_rate_per_s: at most this many replay requests per second from this worker.
        max_replay: seqs asked for in one request (the unit's ``mqtt.max_replay`` caps it too).
    """

    def __init__(
        self,
        broker: str,
        topic: str,
        dsn: str | os.PathLike[str],
        *,
        prefix: str | None = None,
        share: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        client_id: str | None = None,
        protocol: str = "5",
        replay: bool = True,
        gap_grace_s: float = 10.0,
        replay_retry_s: float = 30.0,
        replay_retry_max_s: float = 600.0,
        replay_rate_per_s: float = 20.0,
        max_replay: int = 1000,
        batch_max: int = 500,
        receive_max: int = 2000,
    ) -> None:
        self.host, self.port, self.tls, url_user, url_password = parse_broker(broker)
        self.username = username or url_user
        self.password = password or url_password
        self.share = share
        self.topic = f"$share/{share}/{topic}" if share else topic
        self.prefix = prefix or prefix_of(topic)
        self.subscriptions = [self.topic] + ([f"{self.prefix}/+/+/status"] if share else [])
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.persistent = client_id is not None
        self.client_id = client_id or f"edge-hub-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.protocol = protocol
        self.replay_enabled = replay
        self.gap_grace_s = gap_grace_s
        self.replay_retry_s = replay_retry_s
        self.replay_retry_max_s = replay_retry_max_s
        # between two requests for one gap: replay_retry_s doubling to replay_retry_max_s, +-20 %
        self._replay_backoff = Backoff(
            min(replay_retry_s, replay_retry_max_s), replay_retry_max_s, jitter=spread(0.2)
        )
        self.replay_rate_per_s = replay_rate_per_s
        self.max_replay = max_replay
        self.batch_max = batch_max
        self.receive_max = receive_max
        self.dsn = str(dsn)
        self.db = HubDB(self.dsn)  # the ingest thread's connection (migrates the schema)
        self._view = HubDB(self.dsn, migrate=False)  # queries from other threads
        self.ingestor = Ingestor(self.db, self.prefix, gap_grace_s=gap_grace_s)
        self._init_runtime()
        self.client = self._make_client()

    def _init_runtime(self) -> None:
        """Locks, the message queue, the threads' events and the counters."""
        self.lock = threading.RLock()
        self.changed = threading.Condition(threading.Lock())
        self._q: queue.Queue[tuple[str, bytes | bytearray, bool, int, int]] = queue.Queue()  # paho's payload
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.replays_requested = 0
        self.lag_s: float | None = None
        self.totals = Result()
        self.started = iso_utc(time.time())

    # -- connection ------------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        c = make_client(
            self.client_id,
            v5=self.protocol == "5",
            persistent=self.persistent,
            username=self.username,
            password=self.password,
            tls=self.tls,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = lambda cl, ud, msg: self._q.put(
            (msg.topic, msg.payload, bool(msg.retain), msg.mid, msg.qos)
        )
        return c

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the hub: {reason}"
            log.error(self.last_error)
            return
        self.last_error = None
        client.subscribe([(t, 1) for t in self.subscriptions])
        self.connected.set()

    def start(self) -> Hub:
        connect_async(
            self.client,
            self.host,
            self.port,
            v5=self.protocol == "5",
            persistent=self.persistent,
            receive_max=self.receive_max,
        )
        self.client.loop_start()
        for name, fn in (("hub-ingest", self._run), ("hub-repair", self._repair_loop)):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._threads = []
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        with self.lock:
            self.db.close()
            self._view.close()

    # -- ingest ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            batch = []
            try:
                batch.append(self._q.get(timeout=0.2))
                while len(batch) < self.batch_max:
                    batch.append(self._q.get_nowait())
            except queue.Empty:
                pass
            if not batch:
                continue
            try:
                with self.lock:
                    res = self.ingestor.ingest([(t, p, r) for t, p, r, _, _ in batch])
                self.totals.add(res)
                self.totals.devices = set()
                self.totals.lags = []
                if res.lags:  # how far behind the units this worker runs (smoothed median of the batch)
                    lag = min(600.0, max(0.0, sorted(res.lags)[len(res.lags) // 2]))
                    self.lag_s = lag if self.lag_s is None else 0.7 * self.lag_s + 0.3 * lag
            except Exception:  # noqa: BLE001 - the database is down: keep the messages un-acked, retry
                log.exception("hub: could not store a batch of %d messages; retrying", len(batch))
                for item in batch:
                    self._q.put(item)
                self._stop.wait(1.0)
                continue
            for _t, _p, _r, mid, qos in batch:  # only now may the broker forget them
                if qos > 0:
                    self.client.ack(mid, qos)
            with self.changed:
                self.changed.notify_all()

    # -- gap repair ------------------------------------------------------------------------------
    def _repair_loop(self) -> None:
        db = HubDB(self.dsn, migrate=False)
        tokens, last = self.replay_rate_per_s, time.monotonic()
        next_beat = 0.0
        try:
            while not self._stop.wait(0.5):
                now_m = time.monotonic()
                tokens = min(self.replay_rate_per_s, tokens + (now_m - last) * self.replay_rate_per_s)
                last = now_m
                try:
                    if now_m >= next_beat:
                        next_beat = now_m + 2.0
                        self._heartbeat(db)
                    if self.replay_enabled and self.connected.is_set() and tokens >= 1:
                        tokens -= self._request_due(db, int(tokens))
                except Exception:  # noqa: BLE001 - the database may be away for a while
                    log.exception("hub: gap repair pass failed")
        finally:
            db.close()

    def _heartbeat(self, db: HubDB) -> None:
        t = self.totals
        with db.transaction():
            db.execute(
                "INSERT INTO workers (name, started, heartbeat, heartbeat_s, ingested, duplicates, replays, connected,"
                " lag_s, queued) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " heartbeat = excluded.heartbeat, heartbeat_s = excluded.heartbeat_s, ingested = excluded.ingested,"
                " duplicates = excluded.duplicates, replays = excluded.replays, connected = excluded.connected,"
                " lag_s = excluded.lag_s, queued = excluded.queued",
                (
                    self.client_id,
                    self.started,
                    iso_utc(time.time()),
                    time.time(),
                    t.new,
                    t.duplicates,
                    self.replays_requested,
                    self.connected.is_set(),
                    self.lag_s,
                    self._q.qsize(),
                ),
            )

    def backoff_s(self, requests: int) -> float:
        """Seconds until the next request for a gap already asked for ``requests`` times."""
        return self._replay_backoff.delay_for(requests)

    def fleet_lag_s(self, db: HubDB) -> float:
        """How far behind the units the hub runs now: the largest smoothed lag of the live workers."""
        lag = db.scalar("SELECT MAX(lag_s) FROM workers WHERE heartbeat_s > ?", (time.time() - 10.0,))
        return max(float(lag or 0.0), self.lag_s or 0.0)

    def _request_due(self, db: HubDB, budget: int) -> int:
        """Claim and request up to ``budget`` due gaps; returns how many requests were sent.

        A gap is due at its ``next_request``, pushed back by three times the hub's current lag: while the
        workers run behind, a hole is most likely a message still queued at the broker or at another
        worker, and asking for it would only add duplicates to a hub that is already behind. A worker
        with more than a batch of its own messages waiting asks for nothing."""
        if self._q.qsize() > self.batch_max:
            return 0
        now = time.time() - 3.0 * self.fleet_lag_s(db)
        due = db.query(
            "SELECT g.id, g.site, g.device, g.from_seq, g.to_seq, g.requests, g.next_request FROM gaps g"
            " JOIN devices d ON d.site = g.site AND d.device = g.device"
            " WHERE g.state = 'open' AND g.next_request <= ? AND d.state = 'online'"
            " ORDER BY g.next_request LIMIT ?",
            (now, budget),
        )
        sent = 0
        for g in due:
            with db.transaction():
                cur = db.execute(
                    "UPDATE gaps SET requests = requests + 1, last_request = ?, next_request = ?"
                    " WHERE id = ? AND state = 'open' AND next_request = ?",
                    (
                        iso_utc(time.time()),
                        time.time() + self.backoff_s(g["requests"]),
                        g["id"],
                        g["next_request"],
                    ),
                )
                claimed = cur.rowcount == 1
            if claimed:  # another worker may have taken it first: then it is theirs
                b = min(g["to_seq"], g["from_seq"] + self.max_replay - 1)
                self.request_replay(g["site"], g["device"], g["from_seq"], b)
                sent += 1
        return sent

    def request_replay(self, site: str, device: str, from_seq: int, to_seq: int) -> str:
        req_id = uuid.uuid4().hex[:12]
        body = json.dumps(
            {"schema": SCHEMAS["command"], "id": req_id, "args": {"from_seq": from_seq, "to_seq": to_seq}}
        )
        self.client.publish(f"{self.prefix}/{site}/{device}/cmd/replay", body, qos=1)
        self.replays_requested += 1
        log.info("hub: asked %s/%s to replay %d..%d (%s)", site, device, from_seq, to_seq, req_id)
        return req_id

    # -- queries (any thread) ----------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, retained: bool = False) -> Result:
        """Store one message now, as if it had arrived (tests, tools)."""
        with self.lock:
            return self.ingestor.ingest([(topic, payload, retained)])

    def devices(self) -> list[dict[str, Any]]:
        with self.lock:
            return fleet.units(self._view)

    def seqs(self, site: str, device: str, kind: str | None = None) -> list[int]:
        with self.lock:
            return fleet.seqs(self._view, site, device, kind)

    def payloads(self, site: str, device: str, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return fleet.payloads(self._view, site, device, kind)

    def gaps(self, site: str, device: str) -> list[dict[str, Any]]:
        """What the hub does not hold of a device: ``open`` gaps (being repaired) and ``lost`` ranges."""
        with self.lock:
            return fleet.unresolved(self._view, site, device)

    def query(self, q: str, params: tuple = ()) -> list[dict[str, Any]]:
        with self.lock:
            return self._view.query(q, params)

    def wait_for(self, pred: Callable[[Hub], bool], timeout_s: float) -> bool:
        """Wait until ``pred(hub)`` is true, re-checked after each stored batch (and twice a second)."""
        deadline = time.monotonic() + timeout_s
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self.changed:
                self.changed.wait(min(left, 0.5))
        return True

    # -- the live table --------------------------------------------------------------------------
    def table(self) -> str:
        with self.lock:
            body = fleet.table(self._view)
        conn = (
            "connected" if self.connected.is_set() else f"not connected ({self.last_error or 'connecting'})"
        )
        return (
            f"{body}\nhub {conn} to {self.host}:{self.port}, topic {self.topic}; stored {self.totals.new}, "
            f"duplicates dropped {self.totals.duplicates}, replays requested {self.replays_requested}"
        )
