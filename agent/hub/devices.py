"""Device and gap bookkeeping of one ingest batch, inside its transaction.

:func:`load_devices` reads the batch's device rows (with the batch's own counters added, the keys
starting with ``_``); the ingest updates them in memory; :func:`update_devices` then merges each
touched device's held seq ranges, writes the device rows back and reconciles its gaps with the
holes left (:func:`reconcile`: opened, shrunk, split, closed or marked lost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.hub import ranges as R
from agent.hub.db import HubDB
from agent.hub.rows import Row

Key = tuple[str, str]
Device = dict[str, Any]
Lost = tuple[int, int, str]


def load_devices(db: HubDB, keys: list[Key]) -> dict[Key, Device]:
    """The devices' rows, each with the batch's counters: new seqs, duplicates, the seq the facts and
    the AQI were taken from, and whether its ranges or its status changed."""
    out: dict[Key, Device] = {}
    for i in range(0, len(keys), 400):
        part = keys[i : i + 400]
        marks = ",".join(["(?, ?)"] * len(part))
        for r in db.query(
            f"SELECT * FROM devices WHERE (site, device) IN ({marks})", [x for k in part for x in k]
        ):
            r.update(_new=[], _dups=0, _facts_seq=-1, _aqi_seq=-1, _touched=False, _status_changed=False)
            out[(r["site"], r["device"])] = r
    return out


@dataclass
class GapChanges:
    """The changes to the ``gaps`` table one batch makes: gaps ended (closed or lost), re-bounded, new."""

    now: str
    first_request: float  # when a new hole is asked for first (after the grace time)
    end: list[Row] = field(default_factory=list)
    bounds: list[Row] = field(default_factory=list)
    new: list[Row] = field(default_factory=list)

    def write(self, db: HubDB) -> None:
        db.executemany("UPDATE gaps SET state = ?, closed = ?, reason = ? WHERE id = ?", self.end)
        db.executemany("UPDATE gaps SET from_seq = ?, to_seq = ? WHERE id = ?", self.bounds)
        db.executemany(
            "INSERT INTO gaps (site, device, from_seq, to_seq, state, reason, opened, requests, next_request)"
            " VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?)",
            self.new,
        )


def update_devices(
    db: HubDB,
    devs: dict[Key, Device],
    now: str,
    changes: GapChanges,
    status_json: Callable[[Any], str],
) -> tuple[int, int]:
    """Ranges, device rows and gaps of the batch's devices; returns (new, duplicates) in all.
    ``status_json`` writes a status read back as an object (it is stored as JSON text)."""
    touched = [k for k, d in devs.items() if d["_new"] or d["_touched"]]
    held, lost, gaps = _held_lost_gaps(db, touched)
    _merge_ranges(db, devs, touched, held)
    counts = _write_devices(db, devs, now, status_json)
    for k in touched:
        reconcile(k, devs[k], held[k], lost[k], gaps[k], changes)
    changes.write(db)
    return counts


def _held_lost_gaps(
    db: HubDB, touched: list[Key]
) -> tuple[dict[Key, list[R.Range]], dict[Key, list[Lost]], dict[Key, list[dict[str, Any]]]]:
    """Per touched device: the ranges held, the ranges lost and the open gaps (by from_seq)."""
    held: dict[Key, list[R.Range]] = {k: [] for k in touched}
    lost: dict[Key, list[Lost]] = {k: [] for k in touched}
    gaps: dict[Key, list[dict[str, Any]]] = {k: [] for k in touched}
    for i in range(0, len(touched), 400):  # one query per table for the whole batch, not per device
        part = touched[i : i + 400]
        marks = ",".join(["(?, ?)"] * len(part))
        flat = [x for k in part for x in k]
        for r in db.query(f"SELECT site, device, lo, hi FROM ranges WHERE (site, device) IN ({marks})", flat):
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
    return held, lost, gaps


def _merge_ranges(
    db: HubDB, devs: dict[Key, Device], touched: list[Key], held: dict[Key, list[R.Range]]
) -> None:
    """Add each device's new seqs to its held ranges (rewritten only where they changed; ``held`` is
    updated in place), its highest seq and its baseline."""
    range_del: list[Key] = []
    range_ins: list[Row] = []
    for k in touched:
        d = devs[k]
        if not d["_new"]:
            continue
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


def _write_devices(
    db: HubDB, devs: dict[Key, Device], now: str, status_json: Callable[[Any], str]
) -> tuple[int, int]:
    """Write every device row of the batch back; returns (new, duplicates) in all."""
    rows = []
    n_new_all = n_dup_all = 0
    for k, d in devs.items():
        n_new, n_dup = len(d["_new"]), d["_dups"]
        n_new_all += n_new
        n_dup_all += n_dup
        if n_new or n_dup:
            d["last_seen"] = now
        rows.append(_device_row(k, d, n_new, n_dup, status_json))
    db.executemany(
        "UPDATE devices SET state = ?, session = ?, status = ?, status_at = ?, stale_status = ?,"
        " agent_version = ?, model = ?, accelerator = ?, config_hash = ?, summary_interval_s = ?,"
        " baseline_seq = ?, max_seq = ?, received = ?, duplicates = ?, last_seen = ?, last_msg_ts = ?,"
        " backlog = ?, clock_synced = ?, clock_trusted = ?, aqi = ?, aqi_category = ?, aqi_at = ?"
        " WHERE site = ? AND device = ?",
        rows,
    )
    return n_new_all, n_dup_all


def _device_row(k: Key, d: Device, n_new: int, n_dup: int, status_json: Callable[[Any], str]) -> Row:
    status = d["status"]
    return (
        d["state"],
        d["session"],
        status if isinstance(status, str) or status is None else status_json(status),
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


def reconcile(
    key: Key,
    d: Device,
    held: list[R.Range],
    lost: list[Lost],
    open_gaps: list[dict[str, Any]],
    changes: GapChanges,
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
    now = changes.now
    used: set[R.Range] = set()
    for g in open_gaps:
        gr = (g["from_seq"], g["to_seq"])
        inter = [h for h in hs if R.overlaps(h, gr)]
        if not inter or inter[0] in used:
            why = next((r for a, b, r in lost if R.overlaps((a, b), gr)), None)
            changes.end.append(("lost" if why else "closed", now, why, g["id"]))
            continue
        first = inter[0]
        used.add(first)
        if first != gr:
            changes.bounds.append((first[0], first[1], g["id"]))
        for h in inter[1:]:
            used.add(h)
            changes.new.append((*key, h[0], h[1], g["reason"], now, g["requests"], g["next_request"]))
    for h in hs:
        if h not in used:
            changes.new.append((*key, h[0], h[1], None, now, 0, changes.first_request))
