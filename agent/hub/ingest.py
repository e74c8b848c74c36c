"""Ingest: a batch of MQTT messages -> the hub's tables, in one transaction, idempotently.

For each batch: the devices' rows are created if new and locked in (site, device) order (so
several workers on one PostgreSQL never deadlock, and never both rewrite a device's ranges); every
seq-carrying message is inserted once (``ON CONFLICT DO NOTHING``; the others are counted as
duplicates and dropped); new messages fill the typed tables (volumes, AQI, events); statuses
update online/offline (a last will from an older session is ignored); replay replies and ``gap``
events record ranges the unit no longer stores; then each touched device's held ranges are merged
and its gaps reconciled (opened, shrunk, split, closed or marked lost).

Keys used from the payloads are the documented ones (docs/mqtt.md); anything else stays in the
stored JSON. A malformed part of a message is skipped and counted, never fatal; a message the
database refuses is retried on its own, so it cannot hold up the rest of its batch.

The rows come from :mod:`agent.hub.rows`, are written by :mod:`agent.hub.tables`, and the devices'
ranges, counters and gaps are kept by :mod:`agent.hub.devices`; this module runs the batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.hub.db import HubDB
from agent.hub.devices import Device, GapChanges, Key, load_devices, update_devices
from agent.hub.rows import (
    Msg,
    Row,
    as_dict,
    as_int,
    as_num,
    as_str,
    device_facts,
    epoch,
    event_lost,
    summary_rows,
    ts_or_none,
)
from agent.hub.tables import insert_lost, insert_messages, insert_typed
from agent.sync.topics import SEQ_KINDS, parse
from agent.timefmt import iso_utc

log = logging.getLogger(__name__)

LOST_IGNORED = ("not assigned yet",)

__all__ = ["Ingestor", "Result", "device_facts", "summary_rows", "ts_or_none"]


@dataclass
class Result:
    new: int = 0
    duplicates: int = 0
    statuses: int = 0
    replies: int = 0
    ignored: int = 0
    bad: int = 0
    retries: int = 0
    devices: set[tuple[str, str]] = field(default_factory=set)
    lags: list[float] = field(default_factory=list)  # hub time - unit ts of new live messages (s)

    def add(self, o: Result) -> None:
        for k in ("new", "duplicates", "statuses", "replies", "ignored", "bad", "retries"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        self.devices |= o.devices
        self.lags += o.lags


class Ingestor:
    """Writes batches into a :class:`HubDB` (see the module docstring).

    Args:
        db: the hub database (this thread's connection).
        prefix: the agents' topic prefix.
        gap_grace_s: how long a new hole may stay open before the first replay request (messages
            of one unit arrive out of order across workers and priorities).
        clock: seconds since the epoch (tests may pass their own).
    """

    def __init__(self, db: HubDB, prefix: str, *, gap_grace_s: float = 10.0, clock=time.time) -> None:
        self.db = db
        self.prefix = prefix
        self.gap_grace_s = gap_grace_s
        self.clock = clock

    def _clean(self, text: str) -> str:
        return text.replace("\\u0000", "\\ufffd") if self.db.is_pg else text  # jsonb refuses NUL

    def _json(self, obj: Any) -> str:
        return self._clean(json.dumps(obj))

    # -- parsing -----------------------------------------------------------------------------------
    def _parse(self, topic: str, payload: bytes | bytearray, retained: bool, res: Result) -> Msg | None:
        p = parse(topic, self.prefix)
        if p is None or p.kind == "cmd" or not payload:
            res.ignored += 1  # not ours, our own commands, or a cleared retained status
            return None
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            res.bad += 1
            log.warning("hub: %s: payload is not JSON; dropped", topic)
            return None
        if not isinstance(doc, dict):
            res.bad += 1
            return None
        text = self._clean(payload.decode("utf-8", "replace"))
        m = Msg((p.site, p.device), p.kind, doc, text, retained, p.command)
        if p.kind in SEQ_KINDS:
            m.seq = as_int(doc.get("seq"))
            if m.seq is None or m.seq < 1:
                res.bad += 1
                log.warning("hub: %s: no valid seq; dropped", topic)
                return None
        return m

    # -- the batch -----------------------------------------------------------------------------------
    def ingest(self, batch: Sequence[tuple[str, bytes | bytearray, bool]]) -> Result:
        """Store a batch of ``(topic, payload, retained)``. Returns what happened."""
        res = Result()
        msgs = [m for t, p, r in batch if (m := self._parse(t, p, r, res)) is not None]
        if not msgs:
            return res
        for attempt in range(6):
            try:
                res.add(self._apply(msgs))
                return res
            except Exception as exc:  # noqa: BLE001 - classified below
                if self.db.is_retryable(exc) and attempt < 5:
                    res.retries += 1
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if len(msgs) == 1:
                    res.bad += 1
                    log.error("hub: the database refused a message from %s/%s: %s", *msgs[0].key, exc)
                    return res
                log.warning("hub: batch failed (%s); storing its %d messages one by one", exc, len(msgs))
                for m in msgs:
                    res.add(self._apply_alone(m))
                return res
        return res

    def _apply_alone(self, m: Msg) -> Result:
        """One message of a batch the database refused, on its own (retried once if retryable)."""
        one = Result()
        try:
            one = self._apply([m])
        except Exception as exc1:  # noqa: BLE001
            if self.db.is_retryable(exc1):
                try:
                    one = self._apply([m])
                except Exception as exc2:  # noqa: BLE001
                    one.bad += 1
                    log.error("hub: message from %s/%s not stored: %s", *m.key, exc2)
            else:
                one.bad += 1
                log.error("hub: message from %s/%s not stored: %s", *m.key, exc1)
        return one

    def _apply(self, msgs: list[Msg]) -> Result:
        """The batch in one transaction: devices locked, messages stored once, typed rows, statuses
        and replies, lost ranges; then each device's ranges, counters and gaps."""
        res = Result()
        now_t = self.clock()
        now = iso_utc(now_t)
        keys = sorted({m.key for m in msgs})
        res.devices = set(keys)
        with self.db.transaction():
            devs = self._lock_devices(keys, now)
            seq_msgs = _unique_seq_msgs(msgs, devs)
            new = insert_messages(self.db, seq_msgs, now)
            typed, lost = self._read_new(seq_msgs, new, devs, res, now, now_t)
            insert_typed(self.db, typed)
            lost += self._statuses_and_replies(msgs, devs, res, now, now_t)
            if lost:
                insert_lost(self.db, lost)
                _note_lost(lost, devs)
            changes = GapChanges(now, now_t + self.gap_grace_s)
            n_new, n_dup = update_devices(self.db, devs, now, changes, self._json)
            res.new += n_new
            res.duplicates += n_dup
        return res

    def _lock_devices(self, keys: list[Key], now: str) -> dict[Key, Device]:
        """Create the devices' rows if new, lock them in (site, device) order, and load them."""
        self.db.executemany(
            "INSERT INTO devices (site, device, first_seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(s, d, now) for s, d in keys],
        )
        self.db.lock_devices(keys)
        return load_devices(self.db, keys)

    def _read_new(
        self,
        seq_msgs: list[Msg],
        new: set[tuple[str, str, int]],
        devs: dict[Key, Device],
        res: Result,
        now: str,
        now_t: float,
    ) -> tuple[dict[str, list[Row]], list[Row]]:
        """The typed rows and lost ranges of the new messages; each device's new seqs, duplicates,
        newest message time and facts (the ones the other messages were, are counted as duplicates)."""
        typed: dict[str, list[Row]] = {"volumes": [], "bins": [], "aqi": [], "events": []}
        lost: list[Row] = []
        for m in seq_msgs:
            d = devs[m.key]
            if (*m.key, m.seq) not in new:
                d["_dups"] += 1
                continue
            d["_new"].append(m.seq)
            ts = ts_or_none(m.doc.get("ts"))
            if ts and not m.doc.get("replay") and len(res.lags) < 200:
                t = epoch(ts)
                if t is not None:
                    res.lags.append(now_t - t)
            if ts and (d["last_msg_ts"] is None or ts > d["last_msg_ts"]):
                d["last_msg_ts"] = ts
            facts = device_facts(m.kind, m.doc)
            if m.seq >= d["_facts_seq"]:  # the newest message says how the unit is now
                d.update(facts)
                d["_facts_seq"] = m.seq
            try:
                if m.kind == "summary":
                    self._summary(m, d, typed)
                elif m.kind == "event":
                    self._event(m, ts, typed, lost, now)
            except Exception:  # noqa: BLE001 - a malformed section must not lose the message
                res.bad += 1
                log.exception("hub: could not read a %s of %s/%s (kept as JSON)", m.kind, *m.key)
        return typed, lost

    def _summary(self, m: Msg, d: Device, typed: dict[str, list[Row]]) -> None:
        """A new summary's rows; its AQI is the device's if it is the newest yet."""
        assert m.seq is not None  # a summary without a seq is refused when it is parsed
        rows = summary_rows(*m.key, m.seq, m.doc)
        typed["volumes"] += rows["volumes"]
        typed["bins"] += rows["bins"]
        typed["aqi"] += rows["aqi"]
        if rows["aqi"] and m.seq >= d["_aqi_seq"]:
            best = max(rows["aqi"], key=lambda r: r[5])
            d["aqi"], d["aqi_category"], d["aqi_at"] = best[5], best[6], best[3]
            d["_aqi_seq"] = m.seq

    def _event(self, m: Msg, ts: str | None, typed: dict[str, list[Row]], lost: list[Row], now: str) -> None:
        """A new event's row; a ``gap`` event also reports a range the unit no longer stores."""
        typ = as_str(m.doc.get("type")) or "?"
        data = as_dict(m.doc.get("data"))
        typed["events"].append((*m.key, m.seq, ts, typ, self._json(data)))
        if typ == "gap":
            row = event_lost(*m.key, data, now)
            if row is not None:
                lost.append(row)

    def _statuses_and_replies(
        self, msgs: list[Msg], devs: dict[Key, Device], res: Result, now: str, now_t: float
    ) -> list[Row]:
        """Statuses (birth / last will) and command replies, in arrival order; returns the ranges
        the replies report lost."""
        lost: list[Row] = []
        for m in msgs:
            if m.kind == "status":
                res.statuses += 1
                self._status(devs[m.key], m, now, now_t)
            elif m.kind == "reply":
                res.replies += 1
                lost += self._reply(m, now)
        return lost

    def _status(self, d: Device, m: Msg, now: str, now_t: float) -> None:
        doc = m.doc
        session = as_int(doc.get("session")) or 0
        if d["session"] is not None and session < d["session"]:
            d["stale_status"] += 1  # e.g. the last will of an older connection, delivered late
            d["_status_changed"] = True
            return
        state = as_str(doc.get("state"))
        d.update(state=state, session=session, status=m.text, _status_changed=True)
        d["status_at"] = ts_or_none(doc.get("ts")) or now
        if state == "online":
            self._online(d, m, now, now_t)

    def _online(self, d: Device, m: Msg, now: str, now_t: float) -> None:
        """A birth message: what the unit runs, where its seqs start; a live one (not retained) asks
        for its open gaps soon (after the grace, like a new hole)."""
        doc = m.doc
        for k in ("agent_version", "model", "accelerator", "config_hash"):
            if as_str(doc.get(k)):
                d[k] = as_str(doc.get(k))
        if as_num(doc.get("summary_interval_s")):
            d["summary_interval_s"] = as_num(doc["summary_interval_s"])
        first = as_int(doc.get("seq_first_pending"))
        if d["baseline_seq"] is None and first is not None and first >= 1:
            d["baseline_seq"] = first
            d["_touched"] = True
        if not m.retained:
            d["last_seen"] = now
            self.db.execute(
                "UPDATE gaps SET next_request = LEAST(next_request, ?) WHERE site = ? AND device = ?"
                " AND state = 'open'",
                (now_t + self.gap_grace_s, *m.key),
            )

    def _reply(self, m: Msg, now: str) -> list[Row]:
        doc = m.doc
        self.db.execute(
            "INSERT INTO replies (site, device, command, received, ok, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (*m.key, m.command, now, bool(doc.get("ok")), m.text),
        )
        if m.command != "replay":
            return []
        if not doc.get("ok"):
            err = as_dict(doc.get("error"))
            self.db.execute(
                "UPDATE gaps SET reason = ? WHERE site = ? AND device = ? AND state = 'open'",
                (f"replay refused: {as_str(err.get('code'))}: {as_str(err.get('message'), 300)}", *m.key),
            )
            return []
        out = []
        for x in as_dict(doc.get("result")).get("missing") or []:
            x = as_dict(x)
            a, b, why = as_int(x.get("from_seq")), as_int(x.get("to_seq")), as_str(x.get("reason"), 500)
            if a and b and b >= a and why and not why.startswith(LOST_IGNORED):
                out.append((*m.key, a, b, why, now))
        return out


def _unique_seq_msgs(msgs: list[Msg], devs: dict[Key, Device]) -> list[Msg]:
    """The batch's seq-carrying messages once each, in (device, seq) order; a repeat within the batch
    is counted as a duplicate of its device."""
    seen: set[tuple[str, str, int]] = set()
    seq_msgs: list[Msg] = []
    for m in msgs:
        if m.seq is None:
            continue
        k = (*m.key, m.seq)
        if k in seen:
            devs[m.key]["_dups"] += 1
            continue
        seen.add(k)
        seq_msgs.append(m)
    seq_msgs.sort(key=lambda m: (m.key, m.seq))
    return seq_msgs


def _note_lost(lost: list[Row], devs: dict[Key, Device]) -> None:
    """A device with lost ranges is touched (its gaps are reconciled); its baseline may move down."""
    for s, dv, a, _b, *_ in lost:
        d = devs[(s, dv)]
        d["_touched"] = True
        if d["baseline_seq"] is None or a < d["baseline_seq"]:
            d["baseline_seq"] = a
