"""The batch's writes to the message and typed tables, inside the ingest's transaction.

:func:`insert_messages` stores each seq-carrying message once and says which were new;
:func:`insert_typed` fills ``volumes`` (bins replaced whole by :func:`replace_bins`), ``aqi`` and
``events``; :func:`insert_lost` records the ranges units report as no longer stored.
"""

from __future__ import annotations

from typing import Any

from agent.hub.db import HubDB
from agent.hub.rows import Msg, Row, as_int, ts_or_none

_VOLUMES = (
    "INSERT INTO volumes (site, device, seq, camera, line, direction, class, source, bin_start, bin_s,"
    " count, coverage, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def insert_messages(db: HubDB, msgs: list[Msg], now: str) -> set[tuple[str, str, int]]:
    """Insert the messages (``ON CONFLICT DO NOTHING``); returns the (site, device, seq) stored now."""
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
                as_int(m.doc.get("session")),
                ts_or_none(m.doc.get("ts")),
                now,
                bool(m.doc.get("replay")),
                m.text,
            ]
        cur = db.execute(
            "INSERT INTO messages (site, device, seq, kind, session, ts, received, replay, payload)"
            f" VALUES {marks} ON CONFLICT DO NOTHING RETURNING site, device, seq",
            params,
        )
        new.update((r[0], r[1], r[2]) for r in cur.fetchall())
    return new


def insert_typed(db: HubDB, typed: dict[str, list[Row]]) -> None:
    """Window volumes, bins, AQI and events of the new messages."""
    db.executemany(_VOLUMES, typed["volumes"])
    replace_bins(db, typed["bins"])
    db.executemany(
        "INSERT INTO aqi (site, device, seq, ts, sensor, aqi, category, dominant, aqi_table, pm2_5, pm10)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        typed["aqi"],
    )
    db.executemany(
        "INSERT INTO events (site, device, seq, ts, type, data) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        typed["events"],
    )


def replace_bins(db: HubDB, bins: list[Row]) -> None:
    """Store each bin whole, keyed by (site, device, camera, start): a version ranked higher than
    the stored one (rev, then seq: a unit re-sends a bin that changed, late or not, with a higher
    rev; a unit without revs in a later summary) deletes the stored rows of that bin and inserts
    its own; an equal or lower one (a duplicate, an old version arriving late by replay) is
    dropped. So late and re-sent bins end up as the unit's latest counts, never added twice."""
    best: dict[Row, tuple[tuple[int, int], list[Row]]] = {}
    for site, device, cam, start, rev, seq, rows in bins:
        k, rank = (site, device, cam, start), (rev or 0, seq)
        if k not in best or rank > best[k][0]:
            best[k] = (rank, rows)
    if not best:
        return
    keys = sorted(best)
    stored = _stored_bins(db, keys)
    newer = [k for k in keys if k not in stored or best[k][0] > stored[k]]
    db.executemany(
        "DELETE FROM volumes WHERE site = ? AND device = ? AND camera = ? AND source = 'bin' AND bin_start = ?",
        [k for k in newer if k in stored],
    )
    db.executemany(_VOLUMES, [r for k in newer for r in best[k][1]])


def _stored_bins(db: HubDB, keys: list[Row]) -> dict[Row, tuple[int, int]]:
    """The rank (rev, seq) of each of these bins already stored."""
    stored: dict[Row, tuple[int, int]] = {}
    for i in range(0, len(keys), 200):
        part = keys[i : i + 200]
        marks = ",".join(["(?, ?, ?, ?)"] * len(part))
        for r in db.query(
            "SELECT site, device, camera, bin_start, MAX(COALESCE(rev, 0)) AS rev, MAX(seq) AS seq FROM volumes"
            f" WHERE source = 'bin' AND (site, device, camera, bin_start) IN ({marks})"
            " GROUP BY site, device, camera, bin_start",
            [x for k in part for x in k],
        ):
            stored[(r["site"], r["device"], r["camera"], r["bin_start"])] = (int(r["rev"]), int(r["seq"]))
    return stored


def insert_lost(db: HubDB, lost: list[Row]) -> None:
    """Ranges units report as no longer stored: one row per (device, from_seq), widened if reported again."""
    db.executemany(
        "INSERT INTO lost (site, device, from_seq, to_seq, reason, reported) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (site, device, from_seq) DO UPDATE SET to_seq = GREATEST(lost.to_seq, excluded.to_seq),"
        " reason = excluded.reason",
        lost,
    )
