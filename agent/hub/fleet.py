"""The fleet view: one row per unit, from the hub database (``edge-agent hub status``, the page).

Per unit: online/offline (birth / last will, by session), last seen, backlog, gaps open and
closed, seqs lost, accelerator, AQI, today's counts (UTC day), and two flags that stand out:
``silent`` (it says online but nothing arrived for ``silent_after`` summary intervals, or 3 minutes
when the interval is unknown) and ``clock_untrusted`` (the kernel says the clock is not
synchronised, or GPS time disagrees with it).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from agent.hub import ranges as R
from agent.hub.db import HubDB
from agent.timefmt import iso_utc


def _t(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def today_start(now: float) -> str:
    d = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return iso_utc(d.timestamp())


def units(db: HubDB, now: float | None = None, silent_after: float = 3.0) -> list[dict[str, Any]]:
    """Every unit with its state and flags (see the module docstring)."""
    now = time.time() if now is None else now
    rows = db.query("SELECT * FROM devices ORDER BY site, device")
    gaps = {
        (r["site"], r["device"], r["state"]): r
        for r in db.query(
            "SELECT site, device, state, COUNT(*) AS n, SUM(to_seq - from_seq + 1) AS seqs FROM gaps"
            " GROUP BY site, device, state"
        )
    }
    counts = {
        (r["site"], r["device"]): r["n"]
        for r in db.query(
            "SELECT site, device, SUM(count) AS n FROM volumes WHERE source = 'window' AND bin_start >= ?"
            " GROUP BY site, device",
            (today_start(now),),
        )
    }
    held: dict[tuple[str, str], list[R.Range]] = {}
    for r in db.query("SELECT site, device, lo, hi FROM ranges"):
        held.setdefault((r["site"], r["device"]), []).append((r["lo"], r["hi"]))
    lost: dict[tuple[str, str], list[R.Range]] = {}
    for r in db.query("SELECT site, device, from_seq, to_seq FROM lost"):
        lost.setdefault((r["site"], r["device"]), []).append((r["from_seq"], r["to_seq"]))
    out = []
    for r in rows:
        k = (r["site"], r["device"])
        interval = r["summary_interval_s"] or 60.0
        seen = _t(r["last_seen"])
        ago = None if seen is None else max(0.0, now - seen)
        silent = r["state"] == "online" and (ago is None or ago > max(silent_after * interval, 30.0))
        untrusted = (
            r["clock_synced"] is not None
            and not r["clock_synced"]
            or r["clock_trusted"] is not None
            and not r["clock_trusted"]
        )
        lost_r = R.merge(lost.get(k, []))
        # a lost range counts only for what the hub does not hold after all
        lost_n = sum(R.size(R.holes(held.get(k, []), a, b)) for a, b in lost_r)
        og = gaps.get((*k, "open"), {})
        out.append(
            {
                **{c: r[c] for c in r if c != "status"},
                "last_status": r["status"],
                "online": r["state"] == "online",
                "last_seen_s": None if ago is None else round(ago, 1),
                "silent": bool(silent),
                "clock_untrusted": bool(untrusted),
                "gaps_open": int(og.get("n") or 0),
                "missing": int(og.get("seqs") or 0),
                "gaps_closed": int(gaps.get((*k, "closed"), {}).get("n") or 0),
                "gaps_lost": int(gaps.get((*k, "lost"), {}).get("n") or 0),
                "lost": lost_n,
                "today_count": int(counts.get(k) or 0),
            }
        )
    return out


def workers(db: HubDB, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    rows = db.query("SELECT * FROM workers ORDER BY name")
    for r in rows:
        r["alive"] = r["heartbeat_s"] is not None and now - r["heartbeat_s"] < 10.0
    return rows


def seqs(db: HubDB, site: str, device: str, kind: str | None = None) -> list[int]:
    q = (
        "SELECT seq FROM messages WHERE site = ? AND device = ?"
        + (" AND kind = ?" if kind else "")
        + " ORDER BY seq"
    )
    return [r["seq"] for r in db.query(q, (site, device, kind) if kind else (site, device))]


def payloads(db: HubDB, site: str, device: str, kind: str) -> list[dict[str, Any]]:
    return [
        r["payload"]
        for r in db.query(
            "SELECT payload FROM messages WHERE site = ? AND device = ? AND kind = ? ORDER BY seq",
            (site, device, kind),
        )
    ]


def unresolved(db: HubDB, site: str, device: str) -> list[dict[str, Any]]:
    """Open gaps and lost ranges (those not held after all), in seq order."""
    out = [
        {
            "from_seq": g["from_seq"],
            "to_seq": g["to_seq"],
            "state": "open",
            "reason": g["reason"],
            "requests": g["requests"],
        }
        for g in db.query(
            "SELECT from_seq, to_seq, reason, requests FROM gaps WHERE site = ? AND device = ? AND state = 'open'",
            (site, device),
        )
    ]
    held = [
        (r["lo"], r["hi"])
        for r in db.query("SELECT lo, hi FROM ranges WHERE site = ? AND device = ?", (site, device))
    ]
    lost: list[dict[str, Any]] = []
    for r in db.query(
        "SELECT from_seq, to_seq, reason FROM lost WHERE site = ? AND device = ? ORDER BY from_seq",
        (site, device),
    ):
        for a, b in R.holes(held, r["from_seq"], r["to_seq"]):
            if lost and lost[-1]["reason"] == r["reason"] and lost[-1]["to_seq"] + 1 >= a:
                lost[-1]["to_seq"] = max(lost[-1]["to_seq"], b)  # chunks of one pruning, reported one by one
            else:
                lost.append(
                    {"from_seq": a, "to_seq": b, "state": "lost", "reason": r["reason"], "requests": None}
                )
    return sorted(out + lost, key=lambda g: g["from_seq"])


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "units": len(rows),
        "online": sum(r["online"] for r in rows),
        "offline": sum(not r["online"] for r in rows),
        "silent": sum(r["silent"] for r in rows),
        "clock_untrusted": sum(r["clock_untrusted"] for r in rows),
        "gaps_open": sum(r["gaps_open"] for r in rows),
        "gaps_closed": sum(r["gaps_closed"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
        "received": sum(r["received"] for r in rows),
        "duplicates": sum(r["duplicates"] for r in rows),
    }


def _ago(s: float | None) -> str:
    if s is None:
        return "never"
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def table(db: HubDB, rows: list[dict[str, Any]] | None = None, now: float | None = None) -> str:
    """The fleet as a text table, flagged units marked with ``!``."""
    rows = units(db, now) if rows is None else rows
    head = (
        f"  {'SITE':<12} {'DEVICE':<14} {'STATE':<8} {'LAST SEEN':<12} {'BACKLOG':>7} {'GAPS':>9} {'LOST':>5} "
        f"{'ACCEL':<8} {'AQI':>4} {'TODAY':>7} {'SEQ':>7} {'DUPES':>5}  FLAGS"
    )
    lines = [head, "  " + "-" * (len(head) - 2)]
    for r in rows:
        flags = []
        if r["silent"]:
            flags.append("SILENT")
        if r["clock_untrusted"]:
            flags.append("CLOCK UNTRUSTED")
        if r["gaps_open"]:
            flags.append(f"{r['missing']} missing")
        mark = "!" if flags else " "
        lines.append(
            f"{mark} {r['site']:<12} {r['device']:<14} {r['state'] or '?':<8} {_ago(r['last_seen_s']):<12} "
            f"{r['backlog'] if r['backlog'] is not None else '-':>7} {str(r['gaps_open']) + '/' + str(r['gaps_closed']):>9} "
            f"{r['lost']:>5} {(r['accelerator'] or '-')[:8]:<8} {r['aqi'] if r['aqi'] is not None else '-':>4} "
            f"{r['today_count']:>7} {r['max_seq'] or 0:>7} {r['duplicates']:>5}  {', '.join(flags)}"
        )
    s = summary(rows)
    lines.append(
        f"{s['units']} unit(s): {s['online']} online, {s['offline']} offline, {s['silent']} silent, "
        f"{s['clock_untrusted']} clock untrusted; gaps {s['gaps_open']} open / {s['gaps_closed']} closed, "
        f"{s['lost']} seqs lost; {s['received']} stored, {s['duplicates']} duplicates dropped  (GAPS = open/closed)"
    )
    return "\n".join(lines)
