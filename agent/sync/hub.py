"""The reference hub subscriber: ``edge-agent hub --broker URL --topic 'city/#' [--db hub.sqlite]``.

It tracks every device's status (online/offline, ignoring a stale last will from an older session),
session and ``seq``; stores each seq-carrying message once (duplicates by ``seq`` are counted and
dropped); reports gaps (missing seqs) and, with ``replay``, asks the device to re-send a gap that
stays open for ``gap_grace_s``. Gaps the device announced as pruned (``event`` of type ``gap``) are
reported as lost, with the device's reason. With MQTT 5 shared subscriptions
(``share="GROUP"`` -> ``$share/GROUP/<topic>``) several hub processes split a fleet (docs/mqtt.md).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sqlite3
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.sections import iso_utc
from agent.sync.topics import SCHEMAS, parse

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (site TEXT NOT NULL, device TEXT NOT NULL, state TEXT, session INTEGER,
    last_status TEXT, baseline_seq INTEGER, max_seq INTEGER, received INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0, stale_status INTEGER NOT NULL DEFAULT 0, last_seen TEXT,
    PRIMARY KEY (site, device));
CREATE TABLE IF NOT EXISTS messages (site TEXT NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    session INTEGER, received TEXT NOT NULL, replay INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL,
    PRIMARY KEY (site, device, seq));
CREATE TABLE IF NOT EXISTS lost (site TEXT NOT NULL, device TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL,
    reason TEXT NOT NULL, PRIMARY KEY (site, device, from_seq));
CREATE TABLE IF NOT EXISTS replies (id INTEGER PRIMARY KEY, site TEXT, device TEXT, command TEXT, received TEXT, payload TEXT);
"""


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


class Hub:
    """A hub subscriber (see the module docstring).

    Args:
        broker: ``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS).
        topic: subscription, e.g. ``city/#``; ``share`` wraps it in ``$share/GROUP/``.
        db: the hub's SQLite file.
        prefix: the agents' topic prefix (default: from ``topic``).
    """

    def __init__(
        self,
        broker: str,
        topic: str,
        db: str | Path,
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
        gap_grace_s: float = 3.0,
        replay_retry_s: float = 30.0,
    ) -> None:
        u = urlparse(broker)
        if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"broker URL {broker!r}: use mqtt://host:port or mqtts://host:port")
        self.host, self.tls = u.hostname or "localhost", u.scheme in ("mqtts", "ssl")
        self.port = u.port or (8883 if self.tls else 1883)
        self.username = username or u.username
        self.password = password or u.password
        self.topic = f"$share/{share}/{topic}" if share else topic
        self.prefix = prefix or prefix_of(topic)
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.persistent = client_id is not None
        self.client_id = client_id or f"edge-hub-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.protocol = protocol
        self.replay_enabled = replay
        self.gap_grace_s = gap_grace_s
        self.replay_retry_s = replay_retry_s
        self.db = sqlite3.connect(str(db), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._q: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gap_seen: dict[tuple[str, str, int], float] = {}
        self._requested: dict[tuple[str, str, int], float] = {}
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.replays_requested = 0
        self.client = self._make_client()

    # -- connection ------------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        v5 = self.protocol == "5"
        kw: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": self.client_id,
            "protocol": paho.MQTTv5 if v5 else paho.MQTTv311,
        }
        if not v5:
            kw["clean_session"] = not self.persistent
        c = paho.Client(**kw)
        c.suppress_exceptions = True
        if self.username:
            c.username_pw_set(self.username, self.password)
        if self.tls:
            c.tls_set(
                ca_certs=self.ca_file,
                certfile=self.cert_file,
                keyfile=self.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = lambda cl, ud, msg: self._q.put((msg.topic, msg.payload))
        return c

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the hub: {reason}"
            log.error(self.last_error)
            return
        self.last_error = None
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def start(self) -> Hub:
        props = None
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 86400 if self.persistent else 0
            self.client.connect_async(
                self.host, self.port, 30, clean_start=not self.persistent, properties=props
            )
        else:
            self.client.connect_async(self.host, self.port, 30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        with self.lock:
            self.db.close()

    # -- processing ------------------------------------------------------------------------------
    def _run(self) -> None:
        last_gap_check = 0.0
        while not self._stop.is_set():
            batch = []
            try:
                batch.append(self._q.get(timeout=0.2))
                while len(batch) < 1000:
                    batch.append(self._q.get_nowait())
            except queue.Empty:
                pass
            if batch:
                with self.lock:
                    self.db.execute("BEGIN")
                    for topic, payload in batch:
                        try:
                            self.handle(topic, payload)
                        except Exception:  # noqa: BLE001 - a bad message must not stop the hub
                            log.exception("hub: cannot handle a message on %s", topic)
                    self.db.execute("COMMIT")
                    self.changed.notify_all()
            if self.replay_enabled and time.monotonic() - last_gap_check > 1.0:
                last_gap_check = time.monotonic()
                self._request_replays()

    def _device(self, site: str, device: str) -> dict[str, Any]:
        self.db.execute("INSERT OR IGNORE INTO devices (site, device) VALUES (?, ?)", (site, device))
        cur = self.db.execute("SELECT * FROM devices WHERE site = ? AND device = ?", (site, device))
        return dict(zip([d[0] for d in cur.description], cur.fetchone()))

    def handle(self, topic: str, payload: bytes) -> None:
        """Process one message (inside the caller's transaction)."""
        p = parse(topic, self.prefix)
        if p is None:
            return
        now = iso_utc(time.time())
        if p.kind == "reply":
            self.db.execute(
                "INSERT INTO replies (site, device, command, received, payload) VALUES (?, ?, ?, ?, ?)",
                (p.site, p.device, p.command, now, payload.decode("utf-8", "replace")),
            )
            return
        if p.kind == "cmd" or not payload:
            return  # commands (ours or another hub's), or a cleared retained status
        doc = json.loads(payload)
        dev = self._device(p.site, p.device)
        key = (p.site, p.device)
        if p.kind == "status":
            session = int(doc.get("session", 0))
            if dev["session"] is not None and session < dev["session"]:
                self.db.execute(
                    "UPDATE devices SET stale_status = stale_status + 1 WHERE site = ? AND device = ?", key
                )
                return  # e.g. the last will of an older connection, delivered late
            baseline = dev["baseline_seq"]
            if baseline is None and doc.get("state") == "online" and doc.get("seq_first_pending") is not None:
                baseline = int(doc["seq_first_pending"])
            self.db.execute(
                "UPDATE devices SET state = ?, session = ?, last_status = ?, last_seen = ?, baseline_seq = ?"
                " WHERE site = ? AND device = ?",
                (doc.get("state"), session, payload.decode(), now, baseline, *key),
            )
            return
        seq = doc.get("seq")
        if not isinstance(seq, int):
            return
        cur = self.db.execute(
            "INSERT OR IGNORE INTO messages (site, device, seq, kind, session, received, replay, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, seq, p.kind, doc.get("session"), now, int(bool(doc.get("replay"))), payload.decode()),
        )
        dup = cur.rowcount == 0
        self.db.execute(
            "UPDATE devices SET received = received + ?, duplicates = duplicates + ?, last_seen = ?,"
            " max_seq = MAX(COALESCE(max_seq, 0), ?), baseline_seq = MIN(COALESCE(baseline_seq, ?), ?)"
            " WHERE site = ? AND device = ?",
            (0 if dup else 1, 1 if dup else 0, now, seq, seq, seq, *key),
        )
        if p.kind == "event" and doc.get("type") == "gap" and not dup:
            d = doc.get("data") or {}
            self.db.execute(
                "INSERT OR REPLACE INTO lost (site, device, from_seq, to_seq, reason) VALUES (?, ?, ?, ?, ?)",
                (*key, int(d["from_seq"]), int(d["to_seq"]), str(d.get("reason", "pruned"))),
            )
            # the lost range counts as a (known) gap even if it lies before what this hub has seen
            self.db.execute(
                "UPDATE devices SET baseline_seq = MIN(baseline_seq, ?) WHERE site = ? AND device = ?",
                (int(d["from_seq"]), *key),
            )

    # -- queries ---------------------------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        with self.lock:
            cur = self.db.execute("SELECT * FROM devices ORDER BY site, device")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            gaps = self.gaps(r["site"], r["device"])
            r["missing"] = sum(g["to_seq"] - g["from_seq"] + 1 for g in gaps if g["state"] == "missing")
            r["lost"] = sum(g["to_seq"] - g["from_seq"] + 1 for g in gaps if g["state"] == "lost")
        return rows

    def seqs(self, site: str, device: str, kind: str | None = None) -> list[int]:
        with self.lock:
            q = (
                "SELECT seq FROM messages WHERE site = ? AND device = ?"
                + (" AND kind = ?" if kind else "")
                + " ORDER BY seq"
            )
            return [r[0] for r in self.db.execute(q, (site, device, kind) if kind else (site, device))]

    def payloads(self, site: str, device: str, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                json.loads(r[0])
                for r in self.db.execute(
                    "SELECT payload FROM messages WHERE site = ? AND device = ? AND kind = ? ORDER BY seq",
                    (site, device, kind),
                )
            ]

    def gaps(self, site: str, device: str) -> list[dict[str, Any]]:
        """Missing seq ranges between the baseline and the highest seq seen; ``state`` is missing or lost."""
        with self.lock:
            row = self.db.execute(
                "SELECT baseline_seq, max_seq FROM devices WHERE site = ? AND device = ?", (site, device)
            ).fetchone()
            if not row or row[1] is None:
                return []
            base, top = row[0] or 1, row[1]
            have = [
                r[0]
                for r in self.db.execute(
                    "SELECT seq FROM messages WHERE site = ? AND device = ? AND seq BETWEEN ? AND ?"
                    " ORDER BY seq",
                    (site, device, base, top),
                )
            ]
            lost = self.db.execute(
                "SELECT from_seq, to_seq, reason FROM lost WHERE site = ? AND device = ?", (site, device)
            ).fetchall()
        out: list[dict[str, Any]] = []
        have_set = set(have)
        for s in range(base, top + 1):
            if s in have_set:
                continue
            reason = next((r for la, lb, r in lost if la <= s <= lb), None)
            if out and out[-1]["to_seq"] == s - 1 and out[-1]["reason"] == reason:
                out[-1]["to_seq"] = s
            else:
                out.append(
                    {"from_seq": s, "to_seq": s, "state": "lost" if reason else "missing", "reason": reason}
                )
        return out

    def wait_for(self, pred: Callable[[Hub], bool], timeout_s: float) -> bool:
        """Wait until ``pred(hub)`` is true, re-checked after each processed batch."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
            return True

    # -- replay requests -------------------------------------------------------------------------
    def request_replay(self, site: str, device: str, from_seq: int, to_seq: int) -> str:
        req_id = uuid.uuid4().hex[:12]
        body = json.dumps(
            {"schema": SCHEMAS["command"], "id": req_id, "args": {"from_seq": from_seq, "to_seq": to_seq}}
        )
        self.client.publish(f"{self.prefix}/{site}/{device}/cmd/replay", body, qos=1)
        self.replays_requested += 1
        log.info("hub: asked %s/%s to replay %d..%d (%s)", site, device, from_seq, to_seq, req_id)
        return req_id

    def _request_replays(self) -> None:
        now = time.monotonic()
        for d in self.devices():
            if d["state"] != "online":
                continue
            for g in self.gaps(d["site"], d["device"]):
                if g["state"] != "missing":
                    continue
                k = (d["site"], d["device"], g["from_seq"])
                first = self._gap_seen.setdefault(k, now)
                if now - first < self.gap_grace_s or now - self._requested.get(k, -1e9) < self.replay_retry_s:
                    continue
                self._requested[k] = now
                self.request_replay(d["site"], d["device"], g["from_seq"], g["to_seq"])

    # -- the live table --------------------------------------------------------------------------
    def table(self) -> str:
        rows = self.devices()
        head = f"{'SITE':<14} {'DEVICE':<16} {'STATE':<8} {'SESSION':>7} {'MAX SEQ':>8} {'RECEIVED':>9} {'DUPES':>6} {'MISSING':>8} {'LOST':>6}  LAST SEEN"
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(
                f"{r['site']:<14} {r['device']:<16} {r['state'] or '?':<8} {r['session'] or 0:>7} {r['max_seq'] or 0:>8} "
                f"{r['received']:>9} {r['duplicates']:>6} {r['missing']:>8} {r['lost']:>6}  {r['last_seen'] or ''}"
            )
        conn = (
            "connected" if self.connected.is_set() else f"not connected ({self.last_error or 'connecting'})"
        )
        lines.append(
            f"{len(rows)} device(s); hub {conn} to {self.host}:{self.port}, topic {self.topic}; "
            f"replays requested: {self.replays_requested}"
        )
        return "\n".join(lines)
