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
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from agent.hub import ranges as R
from agent.hub.db import HubDB
from agent.sync.topics import SEQ_KINDS, parse
from agent.timefmt import iso_utc

log = logging.getLogger(__name__)

_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
MAX_SEQ = 2**62
LOST_IGNORED = ("not assigned yet",)


def ts_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and _TS.match(v) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and abs(v) < MAX_SEQ else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any, limit: int = 200) -> str | None:
    return v.replace("\x00", "")[:limit] if isinstance(v, str) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _epoch(iso: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _seconds(a: str | None, b: str | None) -> int | None:
    if not (a and b):
        return None
    try:
        f = _dt.datetime.fromisoformat
        return round((f(b.replace("Z", "+00:00")) - f(a.replace("Z", "+00:00"))).total_seconds())
    except ValueError:
        return None


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


@dataclass
class _Msg:
    key: tuple[str, str]
    kind: str
    doc: dict[str, Any]
    text: str
    retained: bool = False
    command: str | None = None
    seq: int | None = None


# -- typed rows from a summary ------------------------------------------------------------------


def summary_rows(site: str, device: str, seq: int, doc: dict[str, Any]) -> dict[str, list[tuple]]:
    """Volumes per window, bins and AQI rows of one summary.

    ``volumes``: one row per window count. ``bins``: one ``(site, device, camera, start, rev, seq,
    rows)`` per bin in the message, ``rows`` its volume rows; a bin is stored whole and replaced whole
    by a newer version (:meth:`Ingestor._replace_bins`)."""
    out: dict[str, list[tuple]] = {"volumes": [], "bins": [], "aqi": []}
    sections = _dict(doc.get("sections"))
    window = _dict(doc.get("window"))
    w_start, w_end = ts_or_none(window.get("start")), ts_or_none(window.get("end"))
    w_s = _seconds(w_start, w_end)
    for cam, c in _dict(_dict(sections.get("analytics")).get("cameras")).items():
        c = _dict(c)
        if w_start:
            for line, dirs in _dict(c.get("volumes")).items():
                for d, classes in _dict(dirs).items():
                    for cls, n in _dict(classes).items():
                        if _int(n) is not None:
                            out["volumes"].append(
                                (site, device, seq, cam, line, d, cls, "window", w_start, w_s, n, None, None)
                            )
        for b in c.get("bins") or []:
            b = _dict(b)
            start = ts_or_none(b.get("start"))
            if not start:
                continue
            minutes = _int(b.get("minutes"))
            rev = _int(b.get("rev"))
            rows = []
            for line, dirs in _dict(b.get("counts")).items():
                for d, classes in _dict(dirs).items():
                    for cls, n in _dict(classes).items():
                        if _int(n) is not None:
                            rows.append(
                                (
                                    site,
                                    device,
                                    seq,
                                    cam,
                                    line,
                                    d,
                                    cls,
                                    "bin",
                                    start,
                                    minutes * 60 if minutes else None,
                                    n,
                                    _num(b.get("coverage")),
                                    rev,
                                )
                            )
            out["bins"].append((site, device, cam, start, rev, seq, rows))
    for sensor, a in _aqi_by_sensor(_dict(sections.get("sensors"))):
        if _int(a.get("aqi")) is None:
            continue
        out["aqi"].append(
            (
                site,
                device,
                seq,
                w_end or ts_or_none(doc.get("ts")),
                sensor,
                a["aqi"],
                _str(a.get("category")),
                _str(a.get("dominant")),
                _str(a.get("table")),
                _num(a.get("pm2_5")),
                _num(a.get("pm10")),
            )
        )
    return out


def _aqi_by_sensor(sensors: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(sensor, AQI) pairs from either contract: 2.x ``{sensor: {aqi: {table, current: {...}}}}``
    (the current, NowCast AQI) or 1.x ``{aqi: {sensor: {...}}}``."""
    if "aqi" in sensors and not isinstance(_dict(sensors.get("aqi")).get("current"), dict):
        return [(k, _dict(v)) for k, v in _dict(sensors.get("aqi")).items()]  # contract 1.x
    out = []
    for name, sens in sensors.items():
        a = _dict(_dict(sens).get("aqi"))
        cur = _dict(a.get("current"))
        if cur:
            out.append((name, {**cur, "table": a.get("table")}))
    return out


def device_facts(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """What a message says about its unit now: backlog, clock trust, accelerator."""
    f: dict[str, Any] = {}
    if kind == "summary":
        sections = _dict(doc.get("sections"))
        if isinstance(doc.get("clock_synced"), bool):
            f["clock_synced"] = doc["clock_synced"]
        b = _int(_dict(sections.get("health")).get("outbox_backlog"))
        if b is not None:
            f["backlog"] = b
        gps = _dict(sections.get("gps")) or _dict(_dict(sections.get("sensors")).get("gps"))  # 2.x, 1.x
        if isinstance(gps.get("clock_trusted"), bool):
            f["clock_trusted"] = gps["clock_trusted"]
        for c in _dict(_dict(sections.get("inference")).get("cameras")).values():
            acc = _str(_dict(c).get("accelerator"))
            if acc:
                f["accelerator"] = acc
                break
    elif kind == "health":
        b = _int(_dict(doc.get("sync")).get("backlog"))
        if b is not None:
            f["backlog"] = b
        cs = _dict(doc.get("health")).get("clock_synced")
        if isinstance(cs, bool):
            f["clock_synced"] = cs
    return f


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
    def _parse(self, topic: str, payload: bytes, retained: bool, res: Result) -> _Msg | None:
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
        m = _Msg((p.site, p.device), p.kind, doc, text, retained, p.command)
        if p.kind in SEQ_KINDS:
            m.seq = _int(doc.get("seq"))
            if m.seq is None or m.seq < 1:
                res.bad += 1
                log.warning("hub: %s: no valid seq; dropped", topic)
                return None
        return m

    # -- the batch -----------------------------------------------------------------------------------
    def ingest(self, batch: list[tuple[str, bytes, bool]]) -> Result:
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
                    res.add(one)
                return res
        return res

    def _apply(self, msgs: list[_Msg]) -> Result:
        res = Result()
        db = self.db
        now_t = self.clock()
        now = iso_utc(now_t)
        keys = sorted({m.key for m in msgs})
        res.devices = set(keys)
        with db.transaction():
            db.executemany(
                "INSERT INTO devices (site, device, first_seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(s, d, now) for s, d in keys],
            )
            db.lock_devices(keys)
            devs = self._load_devices(keys)
            # 1. seq messages: insert once, learn which are new
            seen: set[tuple[str, str, int]] = set()
            seq_msgs: list[_Msg] = []
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
            new = self._insert_messages(seq_msgs, now)
            typed: dict[str, list[tuple]] = {"volumes": [], "bins": [], "aqi": [], "events": []}
            lost: list[tuple] = []
            for m in seq_msgs:
                d = devs[m.key]
                if (*m.key, m.seq) not in new:
                    d["_dups"] += 1
                    continue
                d["_new"].append(m.seq)
                ts = ts_or_none(m.doc.get("ts"))
                if ts and not m.doc.get("replay") and len(res.lags) < 200:
                    t = _epoch(ts)
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
                        rows = summary_rows(*m.key, m.seq, m.doc)
                        typed["volumes"] += rows["volumes"]
                        typed["bins"] += rows["bins"]
                        typed["aqi"] += rows["aqi"]
                        if rows["aqi"] and m.seq >= d["_aqi_seq"]:
                            best = max(rows["aqi"], key=lambda r: r[5])
                            d["aqi"], d["aqi_category"], d["aqi_at"] = best[5], best[6], best[3]
                            d["_aqi_seq"] = m.seq
                    elif m.kind == "event":
                        typ = _str(m.doc.get("type")) or "?"
                        data = _dict(m.doc.get("data"))
                        typed["events"].append((*m.key, m.seq, ts, typ, self._json(data)))
                        if typ == "gap":
                            a, b = _int(data.get("from_seq")), _int(data.get("to_seq"))
                            if a and b and b >= a:
                                lost.append((*m.key, a, b, _str(data.get("reason"), 500) or "pruned", now))
                except Exception:  # noqa: BLE001 - a malformed section must not lose the message
                    res.bad += 1
                    log.exception("hub: could not read a %s of %s/%s (kept as JSON)", m.kind, *m.key)
            self._insert_typed(typed)
            # 2. statuses (birth / last will), in arrival order
            for m in msgs:
                if m.kind == "status":
                    res.statuses += 1
                    self._status(devs[m.key], m, now, now_t)
                elif m.kind == "reply":
                    res.replies += 1
                    lost += self._reply(m, now)
            if lost:
                db.executemany(
                    "INSERT INTO lost (site, device, from_seq, to_seq, reason, reported) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (site, device, from_seq) DO UPDATE SET to_seq = GREATEST(lost.to_seq, excluded.to_seq),"
                    " reason = excluded.reason",
                    lost,
                )
                for s, dv, a, _b, *_ in lost:
                    d = devs[(s, dv)]
                    d["_touched"] = True
                    if d["baseline_seq"] is None or a < d["baseline_seq"]:
                        d["baseline_seq"] = a
            # 3. ranges, counters, gaps
            self._update_devices(devs, now, now_t, res)
        return res

    def _load_devices(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(0, len(keys), 400):
            part = keys[i : i + 400]
            marks = ",".join(["(?, ?)"] * len(part))
            for r in self.db.query(
                f"SELECT * FROM devices WHERE (site, device) IN ({marks})", [x for k in part for x in k]
            ):
                r.update(_new=[], _dups=0, _facts_seq=-1, _aqi_seq=-1, _touched=False, _status_changed=False)
                out[(r["site"], r["device"])] = r
        return out

    def _insert_messages(self, msgs: list[_Msg], now: str) -> set[tuple[str, str, int]]:
        new: set[tuple[str, str, int]] = set()
        for i in range(0, len(msgs), 500):
            part = msgs[i : i + 500]
            marks = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
            params: list[Any] = []
            for m in part:
                params += [
                    *m.key,
                    m.seq,
                    m.kind,
                    _int(m.doc.get("session")),
                    ts_or_none(m.doc.get("ts")),
                    now,
                    bool(m.doc.get("replay")),
                    m.text,
                ]
            cur = self.db.execute(
                "INSERT INTO messages (site, device, seq, kind, session, ts, received, replay, payload)"
                f" VALUES {marks} ON CONFLICT DO NOTHING RETURNING site, device, seq",
                params,
            )
            new.update((r[0], r[1], r[2]) for r in cur.fetchall())
        return new

    def _insert_typed(self, typed: dict[str, list[tuple]]) -> None:
        self.db.executemany(
            "INSERT INTO volumes (site, device, seq, camera, line, direction, class, source, bin_start, bin_s,"
            " count, coverage, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            typed["volumes"],
        )
        self._replace_bins(typed["bins"])
        self.db.executemany(
            "INSERT INTO aqi (site, device, seq, ts, sensor, aqi, category, dominant, aqi_table, pm2_5, pm10)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            typed["aqi"],
        )
        self.db.executemany(
            "INSERT INTO events (site, device, seq, ts, type, data) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            typed["events"],
        )

    def _replace_bins(self, bins: list[tuple]) -> None:
        """Store each bin whole, keyed by (site, device, camera, start): a version ranked higher than
        the stored one (rev, then seq: a unit re-sends a bin that changed, late or not, with a higher
        rev; a unit without revs in a later summary) deletes the stored rows of that bin and inserts
        its own; an equal or lower one (a duplicate, an old version arriving late by replay) is
        dropped. So late and re-sent bins end up as the unit's latest counts, never added twice."""
        best: dict[tuple, tuple[tuple[int, int], list[tuple]]] = {}
        for site, device, cam, start, rev, seq, rows in bins:
            k, rank = (site, device, cam, start), (rev or 0, seq)
            if k not in best or rank > best[k][0]:
                best[k] = (rank, rows)
        if not best:
            return
        keys = sorted(best)
        stored: dict[tuple, tuple[int, int]] = {}
        for i in range(0, len(keys), 200):
            part = keys[i : i + 200]
            marks = ",".join(["(?, ?, ?, ?)"] * len(part))
            for r in self.db.query(
                "SELECT site, device, camera, bin_start, MAX(COALESCE(rev, 0)) AS rev, MAX(seq) AS seq FROM volumes"
                f" WHERE source = 'bin' AND (site, device, camera, bin_start) IN ({marks})"
                " GROUP BY site, device, camera, bin_start",
                [x for k in part for x in k],
            ):
                stored[(r["site"], r["device"], r["camera"], r["bin_start"])] = (int(r["rev"]), int(r["seq"]))
        newer = [k for k in keys if k not in stored or best[k][0] > stored[k]]
        self.db.executemany(
            "DELETE FROM volumes WHERE site = ? AND device = ? AND camera = ? AND source = 'bin' AND bin_start = ?",
            [k for k in newer if k in stored],
        )
        self.db.executemany(
            "INSERT INTO volumes (site, device, seq, camera, line, direction, class, source, bin_start, bin_s,"
            " count, coverage, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [r for k in newer for r in best[k][1]],
        )

    def _status(self, d: dict[str, Any], m: _Msg, now: str, now_t: float) -> None:
        doc = m.doc
        session = _int(doc.get("session")) or 0
        if d["session"] is not None and session < d["session"]:
            d["stale_status"] += 1  # e.g. the last will of an older connection, delivered late
            d["_status_changed"] = True
            return
        state = _str(doc.get("state"))
        d.update(state=state, session=session, status=m.text, _status_changed=True)
        d["status_at"] = ts_or_none(doc.get("ts")) or now
        if state == "online":
            for k in ("agent_version", "model", "accelerator", "config_hash"):
                if _str(doc.get(k)):
                    d[k] = _str(doc.get(k))
            if _num(doc.get("summary_interval_s")):
                d["summary_interval_s"] = _num(doc["summary_interval_s"])
            first = _int(doc.get("seq_first_pending"))
            if d["baseline_seq"] is None and first is not None and first >= 1:
                d["baseline_seq"] = first
                d["_touched"] = True
            if not m.retained:
                d["last_seen"] = now
                # a unit back online: ask for its open gaps soon (after the grace, like a new hole)
                self.db.execute(
                    "UPDATE gaps SET next_request = LEAST(next_request, ?) WHERE site = ? AND device = ?"
                    " AND state = 'open'",
                    (now_t + self.gap_grace_s, *m.key),
                )

    def _reply(self, m: _Msg, now: str) -> list[tuple]:
        doc = m.doc
        self.db.execute(
            "INSERT INTO replies (site, device, command, received, ok, payload) VALUES (?, ?, ?, ?, ?, ?)",
            (*m.key, m.command, now, bool(doc.get("ok")), m.text),
        )
        if m.command != "replay":
            return []
        if not doc.get("ok"):
            err = _dict(doc.get("error"))
            self.db.execute(
                "UPDATE gaps SET reason = ? WHERE site = ? AND device = ? AND state = 'open'",
                (f"replay refused: {_str(err.get('code'))}: {_str(err.get('message'), 300)}", *m.key),
            )
            return []
        out = []
        for x in _dict(doc.get("result")).get("missing") or []:
            x = _dict(x)
            a, b, why = _int(x.get("from_seq")), _int(x.get("to_seq")), _str(x.get("reason"), 500)
            if a and b and b >= a and why and not why.startswith(LOST_IGNORED):
                out.append((*m.key, a, b, why, now))
        return out

    def _update_devices(
        self, devs: dict[tuple[str, str], dict[str, Any]], now: str, now_t: float, res: Result
    ) -> None:
        db = self.db
        touched = [k for k, d in devs.items() if d["_new"] or d["_touched"]]
        held: dict[tuple[str, str], list[R.Range]] = {k: [] for k in touched}
        lost: dict[tuple[str, str], list[tuple[int, int, str]]] = {k: [] for k in touched}
        gaps: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in touched}
        for i in range(0, len(touched), 400):  # one query per table for the whole batch, not per device
            part = touched[i : i + 400]
            marks = ",".join(["(?, ?)"] * len(part))
            flat = [x for k in part for x in k]
            for r in db.query(
                f"SELECT site, device, lo, hi FROM ranges WHERE (site, device) IN ({marks})", flat
            ):
                held[(r["site"], r["device"])].append((r["lo"], r["hi"]))
            for r in db.query(
                f"SELECT site, device, from_seq, to_seq, reason FROM lost WHERE (site, device) IN ({marks})",
                flat,
            ):
                lost[(r["site"], r["device"])].append((r["from_seq"], r["to_seq"], r["reason"]))
            for r in db.query(
                "SELECT id, site, device, from_seq, to_seq, requests, next_request, reason FROM gaps"
                f" WHERE state = 'open' AND (site, device) IN ({marks}) ORDER BY from_seq",
                flat,
            ):
                gaps[(r["site"], r["device"])].append(r)
        range_del, range_ins = [], []
        for k in touched:
            d = devs[k]
            if d["_new"]:
                before = R.merge(held[k])
                after = R.merge(before + R.from_seqs(d["_new"]))
                if after != before:
                    range_del.append(k)
                    range_ins += [(*k, a, b) for a, b in after]
                held[k] = after
                lo, hi = min(d["_new"]), max(d["_new"])
                d["max_seq"] = hi if d["max_seq"] is None else max(d["max_seq"], hi)
                if d["baseline_seq"] is None or lo < d["baseline_seq"]:
                    d["baseline_seq"] = lo
        db.executemany("DELETE FROM ranges WHERE site = ? AND device = ?", range_del)
        db.executemany("INSERT INTO ranges (site, device, lo, hi) VALUES (?, ?, ?, ?)", range_ins)
        rows = []
        for k, d in devs.items():
            n_new, n_dup = len(d["_new"]), d["_dups"]
            res.new += n_new
            res.duplicates += n_dup
            if n_new or n_dup:
                d["last_seen"] = now
            status = d["status"]
            rows.append(
                (
                    d["state"],
                    d["session"],
                    status if isinstance(status, str) or status is None else self._json(status),
                    d["status_at"],
                    d["stale_status"],
                    d["agent_version"],
                    d["model"],
                    d["accelerator"],
                    d["config_hash"],
                    d["summary_interval_s"],
                    d["baseline_seq"],
                    d["max_seq"],
                    d["received"] + n_new,
                    d["duplicates"] + n_dup,
                    d["last_seen"],
                    d["last_msg_ts"],
                    d["backlog"],
                    d["clock_synced"],
                    d["clock_trusted"],
                    d["aqi"],
                    d["aqi_category"],
                    d["aqi_at"],
                    *k,
                )
            )
        db.executemany(
            "UPDATE devices SET state = ?, session = ?, status = ?, status_at = ?, stale_status = ?,"
            " agent_version = ?, model = ?, accelerator = ?, config_hash = ?, summary_interval_s = ?,"
            " baseline_seq = ?, max_seq = ?, received = ?, duplicates = ?, last_seen = ?, last_msg_ts = ?,"
            " backlog = ?, clock_synced = ?, clock_trusted = ?, aqi = ?, aqi_category = ?, aqi_at = ?"
            " WHERE site = ? AND device = ?",
            rows,
        )
        ops: dict[str, list[tuple]] = {"end": [], "bounds": [], "new": []}
        for k in touched:
            self._reconcile(k, devs[k], held[k], lost[k], gaps[k], now, now_t, ops)
        db.executemany("UPDATE gaps SET state = ?, closed = ?, reason = ? WHERE id = ?", ops["end"])
        db.executemany("UPDATE gaps SET from_seq = ?, to_seq = ? WHERE id = ?", ops["bounds"])
        db.executemany(
            "INSERT INTO gaps (site, device, from_seq, to_seq, state, reason, opened, requests, next_request)"
            " VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?)",
            ops["new"],
        )

    def _reconcile(
        self,
        key: tuple[str, str],
        d: dict[str, Any],
        held: list[R.Range],
        lost: list[tuple[int, int, str]],
        open_gaps: list[dict[str, Any]],
        now: str,
        now_t: float,
        ops: dict[str, list[tuple]],
    ) -> None:
        """The changes that bring the device's open gaps in line with the holes left by what is held or
        lost: a gap shrinks, splits (the parts keep its request count and schedule), closes when filled,
        or becomes ``lost`` when the unit reported it gone; a new hole opens a gap after the grace time."""
        base, top = d["baseline_seq"], d["max_seq"]
        if base is None or top is None:
            return
        hs = R.holes(held + [(a, b) for a, b, _ in lost], base, top)
        if not hs and not open_gaps:
            return
        used: set[R.Range] = set()
        for g in open_gaps:
            gr = (g["from_seq"], g["to_seq"])
            inter = [h for h in hs if R.overlaps(h, gr)]
            if not inter or inter[0] in used:
                why = next((r for a, b, r in lost if R.overlaps((a, b), gr)), None)
                ops["end"].append(("lost" if why else "closed", now, why, g["id"]))
                continue
            first = inter[0]
            used.add(first)
            if first != gr:
                ops["bounds"].append((first[0], first[1], g["id"]))
            for h in inter[1:]:
                used.add(h)
                ops["new"].append((*key, h[0], h[1], g["reason"], now, g["requests"], g["next_request"]))
        for h in hs:
            if h not in used:
                ops["new"].append((*key, h[0], h[1], None, now, 0, now_t + self.gap_grace_s))
