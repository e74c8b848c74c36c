"""The NGSI-LD sink: entities into ``sink_queue`` (SQLite), then batched upserts to a context broker.

Two steps on one thread, like the MQTT path:

1. **Produce** (every ``interval_s``): the bins and hours completed since the sink's cursors become
   entities (:mod:`agent.ngsi_ld.encode`, the same code as ``edge-agent export ngsi-ld``); bins are
   taken by change number, not end time, so one committed late or changed again is still exported
   (an upsert of the same id); they are queued in ``sink_queue`` and the cursor moves in the same transaction, so a crash neither loses
   nor doubles a step.
2. **Send**: pending rows, oldest first, one entity type per request (one ``Link`` context),
   ``batch_size`` at a time: ``POST {url}/ngsi-ld/v1/entityOperations/upsert`` with
   ``Content-Type: application/json``, the ``Link`` header, ``NGSILD-Tenant`` and a bearer token when
   configured. 201/204: delivered. 207: the ids in ``success`` are delivered; those in ``errors``
   with a 400-class problem are ``rejected`` (named in the log and ``last_error``), the others retried.
   Connection errors, timeouts (a hanging broker), 401/403/408/429 and 5xx: nothing is marked, the
   batch is retried with exponential backoff and jitter from ``retry_initial_s`` to ``retry_max_s``,
   forever. Another 4xx: the batch is rejected (a broker that refuses our payload would refuse it
   forever; the rows stay in the database for inspection).

A row is ``delivered`` only after the broker's success answer. Ids are stable URNs, so the re-send of
a batch whose answer was lost is an idempotent upsert.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from agent.backoff import EQUAL, Backoff
from agent.ngsi_ld import encode
from agent.sync import outbox
from agent.timefmt import iso_utc

log = logging.getLogger(__name__)

SINK = "ngsi-ld"
#: ``sink_cursor.what`` suffix: the last bin change (``volume_bins.change_seq``) turned into entities
BINS_CURSOR = ":bins"
UPSERT_PATH = "/ngsi-ld/v1/entityOperations/upsert"
RETRY_STATUS = {401, 403, 408, 425, 429}
#: one step of produce: (sink_cursor.what, the entities to queue, the cursor's new value)
_Batch = tuple[str, list[dict[str, Any]], str]


def link_header(entity_type: str) -> str:
    return f'<{encode.context_for(entity_type)}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


class NgsiLdSink:
    """Args:
    cfg: the whole AgentConfig (``ngsi_ld`` section, device, cameras, sensors).
    writer: the database writer (every state change is one of its transactions).
    reader: returns a read connection.
    clock: wall clock.
    """

    def __init__(
        self, cfg: Any, writer: Any, reader: Callable[[], sqlite3.Connection], clock=time.time
    ) -> None:
        self.cfg = cfg
        self.ncfg = cfg.ngsi_ld
        self.writer = writer
        self.reader = reader
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.delivered = 0
        self.rejected = 0
        self.failures = 0
        self.last_error: str | None = None
        self.next_try_in_s: float | None = None
        self.last_progress = time.monotonic()
        # retry_initial_s doubling to retry_max_s, "equal jitter" (between half and all of it)
        self._retry_backoff = Backoff(
            min(self.ncfg.retry_initial_s, self.ncfg.retry_max_s), self.ncfg.retry_max_s, jitter=EQUAL
        )
        token = None
        if self.ncfg.token_file:
            token = self.ncfg.token_file.read_text().strip()
        self._token = token

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> NgsiLdSink:
        self._thread = threading.Thread(target=self._run, name="ngsi-ld-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def health(self) -> dict[str, Any]:
        conn = self.reader()
        try:
            counts = dict(
                conn.execute(
                    "SELECT state, COUNT(*) FROM sink_queue WHERE sink = ? GROUP BY state", (SINK,)
                ).fetchall()
            )
        finally:
            conn.close()
        return {
            "url": self.ncfg.url,
            "pending": counts.get("pending", 0),
            "delivered": counts.get("delivered", 0),
            "rejected": counts.get("rejected", 0),
            "requests": self.sent,
            "failures": self.failures,
            "last_error": self.last_error,
            "next_try_in_s": self.next_try_in_s,
        }

    # -- produce --------------------------------------------------------------------------------
    def produce(self, now: float | None = None) -> int:
        """Queue the entities of everything completed since the cursor. Returns the entities queued."""
        now = self.clock() if now is None else now
        batches = self._collect(now)
        if not outbox.submit(
            self.writer, self._queue_writer(batches, iso_utc(now)), kind="ngsi-ld", block=True, timeout_s=10
        ):
            self.last_error = "writer queue full: entities postponed"
            return 0
        self.writer.flush(10)
        return sum(len(es) for _, es, _ in batches)

    def _collect(self, now: float) -> list[_Batch]:
        """Per configured type, the entities completed since its cursor and the cursor's new value."""
        from agent.ngsi_ld import source

        until = iso_utc(now)
        conn = self.reader()
        try:
            cursors = dict(
                conn.execute("SELECT what, value FROM sink_cursor WHERE sink = ?", (SINK,)).fetchall()
            )
            default = iso_utc(now - self.ncfg.lookback_s)
            unit = source.unit_of(conn, self.cfg)
            batches: list[_Batch] = []
            for t in self.ncfg.types:
                since = cursors.get(t, default)
                if t == "TrafficFlowObserved":
                    batches += self._traffic_batches(conn, cursors.get(t + BINS_CURSOR), since, until, unit)
                elif since < until:
                    es = source.air_quality(conn, self.cfg, since, until, unit)
                    batches.append((t, es, iso_utc(now - now % 3600)))  # only complete hours were encoded
        finally:
            conn.close()
        return batches

    def _traffic_batches(
        self, conn: sqlite3.Connection, raw_mark: str | None, since: str, until: str, unit: encode.Unit
    ) -> list[_Batch]:
        """TrafficFlowObserved by change, not by end time: a bin committed late, or changed again,
        still goes out (the bins cursor moves to the last change taken)."""
        from agent.ngsi_ld import source

        t = "TrafficFlowObserved"
        rows, mark = source.changed_volume_bins(
            conn, None if raw_mark is None else int(raw_mark), since, until
        )
        es = source.traffic(conn, self.cfg, since, until, unit, bins=rows)
        out: list[_Batch] = []
        if mark is not None:
            out.append((t + BINS_CURSOR, [], str(mark)))
        out.append((t, es, until))
        return out

    def _queue_writer(self, batches: list[_Batch], created: str) -> Callable[[sqlite3.Connection], None]:
        """The writer transaction: each batch's entities into sink_queue, and its cursor moved."""
        form = self.ncfg.form

        def write(c: sqlite3.Connection) -> None:
            for t, es, cur in batches:
                c.executemany(
                    "INSERT INTO sink_queue (sink, kind, key, created, payload) VALUES (?, ?, ?, ?, ?)",
                    [
                        (
                            SINK,
                            t,
                            e["id"],
                            created,
                            json.dumps(encode.normalized(e) if form == "normalized" else e),
                        )
                        for e in es
                    ],
                )
                c.execute(
                    "INSERT INTO sink_cursor (sink, what, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (sink, what) DO UPDATE SET value = excluded.value",
                    (SINK, t, cur),
                )

        return write

    # -- send -----------------------------------------------------------------------------------
    def _pending(self) -> list[tuple[int, str, str, str]]:
        conn = self.reader()
        try:
            first = conn.execute(
                "SELECT kind FROM sink_queue WHERE sink = ? AND state = 'pending' ORDER BY id LIMIT 1",
                (SINK,),
            ).fetchone()
            if not first:
                return []
            return conn.execute(
                "SELECT id, kind, key, payload FROM sink_queue WHERE sink = ? AND state = 'pending' AND kind = ?"
                " ORDER BY id LIMIT ?",
                (SINK, first[0], self.ncfg.batch_size),
            ).fetchall()
        finally:
            conn.close()

    def _mark(self, ids: list[int], state: str, error: str | None = None) -> None:
        now = iso_utc(time.time())

        def write(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE sink_queue SET state = ?, attempts = attempts + 1, last_error = ?, delivered = ? WHERE id = ?",
                [(state, error, now if state == "delivered" else None, i) for i in ids],
            )

        outbox.submit(self.writer, write, kind="ngsi-ld", block=True, timeout_s=10)
        self.writer.flush(10)

    def _post(self, entity_type: str, body: bytes) -> tuple[int, bytes]:
        url = (
            self.ncfg.url.rstrip("/")
            + UPSERT_PATH
            + ("?options=keyValues" if self.ncfg.form == "keyValues" else "")
        )
        headers = {
            "Content-Type": "application/json",
            "Link": link_header(entity_type),
            "Accept": "application/json",
        }
        if self.ncfg.tenant:
            headers["NGSILD-Tenant"] = self.ncfg.tenant
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.ncfg.timeout_s) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def send_once(self) -> int | None:
        """Send one batch. Returns the number of rows delivered, or None when it must be retried."""
        rows = self._pending()
        if not rows:
            return 0
        etype = rows[0][1]
        body = ("[" + ",".join(r[3] for r in rows) + "]").encode()
        self.sent += 1
        try:
            status, text = self._post(etype, body)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            self._retry(f"context broker {self.ncfg.url} unreachable: {getattr(exc, 'reason', exc)}")
            return None
        ids = {r[2]: r[0] for r in rows}
        if status in (200, 201, 204):
            self._mark(list(ids.values()), "delivered")
            self.delivered += len(ids)
            self._retry_backoff.reset()
            self.last_error = None
            return len(ids)
        if status == 207:
            return self._multi_status(ids, text)
        return self._failed(status, text, ids)

    def _multi_status(self, ids: dict[str, int], text: bytes) -> int | None:
        """207: mark the ids in ``success`` delivered, reject those with a 400-class error, retry the rest."""
        try:
            doc = json.loads(text or b"{}")
        except ValueError:
            self._retry("context broker answered 207 without a JSON body")
            return None
        ok = [ids[i] for i in doc.get("success", []) if i in ids]
        bad: list[tuple[int, dict[str, Any]]] = []
        retry: list[tuple[int, dict[str, Any]]] = []
        for err in doc.get("errors", []):
            rid = ids.get(err.get("entityId"))
            if rid is None:
                continue
            code = (err.get("error") or {}).get("status") or 400
            (retry if int(code) >= 500 or int(code) in RETRY_STATUS else bad).append((rid, err))
        if ok:
            self._mark(ok, "delivered")
            self.delivered += len(ok)
        for rid, err in bad:
            msg = f"rejected by the context broker: {json.dumps(err.get('error'))[:300]}"
            log.error("NGSI-LD entity %s %s", err.get("entityId"), msg)
            self._mark([rid], "rejected", msg)
            self.rejected += 1
        if retry:
            self._retry(f"context broker failed {len(retry)} entities of a batch (207)")
            return None
        self._retry_backoff.reset()
        return len(ok)

    def _failed(self, status: int, text: bytes, ids: dict[str, int]) -> int | None:
        """Another status: retried (5xx, 401/403/408/425/429) or the whole batch rejected."""
        detail = (text or b"")[:300].decode("utf-8", "replace")
        if status >= 500 or status in RETRY_STATUS:
            hint = " (check ngsi_ld.token_file)" if status in (401, 403) else ""
            self._retry(f"context broker answered HTTP {status}{hint}: {detail}")
            return None
        msg = f"context broker refused the batch: HTTP {status}: {detail}"
        log.error("NGSI-LD %s", msg)
        self._mark(list(ids.values()), "rejected", msg)
        self.rejected += len(ids)
        self.last_error = msg
        return 0

    def _retry(self, error: str) -> None:
        """Count a failure and set the backoff delay before the next try (send_once then returns None)."""
        self.failures += 1
        self.last_error = error
        self.next_try_in_s = round(self._retry_backoff.next_delay(), 3)
        log.warning("NGSI-LD sink: %s; retrying in %.1f s", error, self.next_try_in_s)

    def _run(self) -> None:
        next_produce = 0.0
        while not self._stop.is_set():
            self.last_progress = time.monotonic()
            try:
                if time.monotonic() >= next_produce:
                    self.produce()
                    next_produce = time.monotonic() + self.ncfg.interval_s
                n = self.send_once()
            except Exception as exc:  # a bug must not end the sink for good
                log.exception("NGSI-LD sink: unexpected error")
                self._retry(f"internal error: {exc!r}")
                n = None
            if n is None:
                self._stop.wait(self.next_try_in_s or self.ncfg.retry_initial_s)
                self.next_try_in_s = None
            elif n == 0:
                self._wake.wait(max(0.05, next_produce - time.monotonic()))
                self._wake.clear()


def prune_delivered(conn: sqlite3.Connection, limit: int) -> int:
    """Retention step: the oldest delivered (or rejected) rows of the sink queue, after the MQTT ones."""
    cur = conn.execute(
        "DELETE FROM sink_queue WHERE id IN (SELECT id FROM sink_queue WHERE state != 'pending' ORDER BY id LIMIT ?)",
        (limit,),
    )
    outbox.add_counter(conn, "pruned_other", cur.rowcount)
    return cur.rowcount
