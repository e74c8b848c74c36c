"""`counts` over long windows: closed bins answer for the time they cover, crossings for the rest
(#15 item 5: a month of a busy junction must not be read crossing by crossing)."""

from __future__ import annotations

import random
import sqlite3

import pytest

from agent.analytics.volumes import volumes
from agent.store.db import Database
from agent.timefmt import iso_utc, parse_iso

T0 = 1_700_000_000 // 3600 * 3600  # on an hour boundary
BIN = 900


def _naive(conn: sqlite3.Connection, since: float, bin_s: int, camera: str | None = None) -> dict:
    """The reference: every crossing since ``since``, binned one by one (what counts did before)."""
    out: dict = {}
    q = "SELECT camera, line, direction, class, ts FROM crossings WHERE ts >= ?"
    for cam, line, d, cls, ts in conn.execute(q, (iso_utc(since),)):
        if camera and cam != camera:
            continue
        key = (iso_utc(int(parse_iso(ts) // bin_s * bin_s)), cam, line, d, cls)
        out[key] = out.get(key, 0) + 1
    return out


def _as_dict(rows: list[dict]) -> dict:
    return {(r["bin_start"], r["camera"], r["line"], r["direction"], r["class"]): r["count"] for r in rows}


@pytest.fixture
def junction(tmp_path):
    """Two cameras, 10 hours of crossings; closed bins written as the runner writes them, up to the
    open bin (camera a) and with an empty last hour (camera b, a quiet road)."""
    path = tmp_path / "agent.sqlite"
    Database(path).close()
    conn = sqlite3.connect(path)
    rng = random.Random(3)
    rows, bins = [], {}
    now = T0 + 10 * 3600 + 420  # 7 minutes into an open bin
    for cam, until in (("a", now), ("b", now - 3600)):
        t = T0 + 0.0
        while t < until:
            t += rng.expovariate(1 / 4.0)
            if t >= until:
                break
            line, d, cls = rng.choice("xy"), rng.choice(("in", "out")), rng.choice(("car", "truck"))
            rows.append((iso_utc(t), cam, line, d, cls, len(rows), 1.0, 2.0))
            b = int(t // BIN * BIN)
            if b + BIN <= now:  # closed
                bins[(cam, line, d, cls, b)] = bins.get((cam, line, d, cls, b), 0) + 1
    conn.executemany(
        "INSERT INTO crossings (ts, camera, line, direction, class, track_id, x, y) VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [(c, ln, d, k, iso_utc(b), BIN, n, BIN) for (c, ln, d, k, b), n in bins.items()],
    )
    conn.commit()
    yield conn, now
    conn.close()


@pytest.mark.parametrize("bin_s", [900, 3600, 86400, 300])  # 300: not a multiple of the bins: crossings only
@pytest.mark.parametrize("back_s", [10 * 3600 + 420, 4 * 3600 + 123, 600, 30])
def test_bins_and_crossings_give_what_every_crossing_gives(junction, bin_s, back_s):
    conn, now = junction
    since = now - back_s
    for camera in (None, "a", "b"):
        assert _as_dict(volumes(conn, since, bin_s, camera)) == _naive(conn, since, bin_s, camera)


def test_bins_still_count_what_retention_pruned(junction):
    """The raw crossings of the first 6 hours are pruned (summarised, over budget): the bins keep them."""
    conn, now = junction
    before = _as_dict(volumes(conn, T0, 3600))
    conn.execute("DELETE FROM crossings WHERE ts < ?", (iso_utc(T0 + 6 * 3600),))
    conn.commit()
    assert _as_dict(volumes(conn, T0, 3600)) == before
    assert sum(before.values()) > sum(_naive(conn, T0, 3600).values())  # the old way lost them


def test_a_stored_bin_that_grows_after_a_restart_is_read_from_its_crossings(junction):
    """The runner writes the open bin when the agent stops and adds to it when it closes after the
    restart: until then the crossings since the restart are only in ``crossings``."""
    conn, now = junction
    open_bin = int(now // BIN * BIN)
    conn.execute(  # the stop: the open bin as far as it went
        "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s)"
        " SELECT camera, line, direction, class, ?, ?, count(*), 420 FROM crossings WHERE camera = 'a' AND ts >= ?"
        " GROUP BY camera, line, direction, class",
        (iso_utc(open_bin), BIN, iso_utc(open_bin)),
    )
    conn.executemany(  # after the restart
        "INSERT INTO crossings (ts, camera, line, direction, class, track_id, x, y) VALUES (?, 'a', 'x', 'in', 'car', ?, 0, 0)",
        [(iso_utc(now + 10 + i), 10_000 + i) for i in range(7)],
    )
    conn.commit()
    got = _as_dict(volumes(conn, T0, 3600, "a"))
    assert got == _naive(conn, T0, 3600, "a")


def test_the_queries_use_the_indexes(junction):
    from agent.analytics.volumes import volumes_plan_sql

    conn, _ = junction
    for name, (sql, args) in volumes_plan_sql(iso_utc(T0), 3600, "a").items():
        plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), (name, plan)
