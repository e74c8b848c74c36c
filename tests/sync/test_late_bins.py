"""Issue #14: a bin committed after its window's summary went out still reaches the hub, once per
change, and the hub ends up with the unit's counts (real SQLite, real writer, real mosquitto, the
real hub ingest)."""

from __future__ import annotations

import sqlite3

from agent.analytics import store
from agent.analytics.bins import ClosedBin, ZoneBin
from agent.sync.summary import parse_iso
from agent.timefmt import iso_utc
from tests.sync.conftest import agent_config, schema_validator

SITE, DEV = "site-a", "unit-1"
NB, SB = ("main", "northbound", "car"), ("main", "southbound", "car")


def _hub_bins(hub) -> dict[tuple[str, str, str], int]:
    return {
        (r["direction"], r["class"], r["bin_start"]): r["count"]
        for r in hub.query("SELECT direction, class, bin_start, count FROM volumes WHERE source = 'bin'")
    }


def _sent_bins(hub) -> list[tuple[int, dict]]:
    """(seq, bin) of every bin in every summary the hub holds."""
    out = []
    for d in hub.payloads(SITE, DEV, "summary"):
        for c in ((d["sections"].get("analytics") or {}).get("cameras") or {}).values():
            out += [(d["seq"], b) for b in c["bins"]]
    return out


def _write_bin(agent, start: float, counts: dict, coverage: float, zones: dict | None = None) -> None:
    b = ClosedBin(start, 60, coverage, counts, zones or {})
    agent.writer.submit_fn(store.upsert_bin("cam0", b), kind="volume_bins", block=True)
    assert agent.writer.flush(5)


def test_a_bin_committed_after_its_window_was_summarised_reaches_the_hub(tmp_path, broker, hub, agents):
    cfg = agent_config(tmp_path, broker)
    a = agents(cfg).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 2, 20)
    # a window that is summarised and at the hub; the bin ends exactly at its end (selected by it, by time)
    done = hub.payloads(SITE, DEV, "summary")[-1]["window"]
    w_end = parse_iso(done["end"])
    start = w_end - 60
    _write_bin(a, start, {NB: 5, SB: 0}, 60.0, {"stop": ZoneBin(peak=3, occ_integral=30.0, entries=4)})
    key = ("northbound", "car", iso_utc(start))
    assert hub.wait_for(lambda h: _hub_bins(h).get(key) == 5, 15), _hub_bins(hub)

    sent = _sent_bins(hub)
    assert len(sent) == 1
    seq, b = sent[0]
    assert (
        b["start"] == iso_utc(start)
        and b["minutes"] == 1
        and b["counts"] == {"main": {"northbound": {"car": 5}}}
    )
    assert b["late"] is True and b["rev"] >= 1  # it belongs to a window already sent
    assert b["zones"] == {"stop": {"peak": 3, "entries": 4, "occupancy_mean": 0.5}}
    (doc,) = [d for d in hub.payloads(SITE, DEV, "summary") if d["seq"] == seq]
    assert parse_iso(doc["window"]["start"]) >= w_end  # sent in a later window's summary
    v = schema_validator("summary")
    for d in hub.payloads(SITE, DEV, "summary"):
        v.validate(d)

    # the same bin changes again (a crossing resolved late, a restart continuing it): an amendment
    # with a higher rev; the hub replaces its count (5 + 2 = 7 on the unit), never adds it twice
    _write_bin(a, start, {NB: 2, SB: 1}, 0.0)
    assert hub.wait_for(lambda h: _hub_bins(h).get(key) == 7, 15), _hub_bins(hub)
    assert _hub_bins(hub)[("southbound", "car", iso_utc(start))] == 1
    sent = _sent_bins(hub)
    assert len(sent) == 2 and sent[1][1]["rev"] > sent[0][1]["rev"]

    # a restart resumes exactly where the last summary stopped: nothing is sent again, nothing skipped
    a.stop()
    with sqlite3.connect(cfg["storage"]["path"]) as c:
        n_before = c.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'summary'").fetchone()[0]
    b2 = agents(cfg).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= n_before + 2, 20)
    _write_bin(b2, start - 60, {NB: 9, SB: 0}, 60.0)
    assert hub.wait_for(lambda h: _hub_bins(h).get(("northbound", "car", iso_utc(start - 60))) == 9, 15)
    b2.stop()
    assert [b["start"] for _, b in _sent_bins(hub)] == [iso_utc(start)] * 2 + [iso_utc(start - 60)]
    assert _hub_bins(hub)[key] == 7


def test_upgrade_numbers_existing_bins_and_sends_only_those_the_time_selection_missed(tmp_path):
    """A v1 analytics database (bins, summaries already sent): the migration numbers the rows that end
    after the last summarised window after the others and sets the mark between them."""
    from agent.analytics.store import SUMMARY_MARK
    from agent.analytics.summary import analytics_section, bins_cursor
    from agent.sections import summary_mark
    from agent.store.db import _split_sql, registered_components

    conn = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    v1 = {c: ms[0].apply for c, ms in registered_components().items() if c in ("analytics", "sync")}
    for c in ("analytics", "sync"):
        for st in _split_sql(v1[c]):
            conn.execute(st)
    conn.execute(
        "INSERT INTO summary_windows VALUES ('2026-12-01T10:00:00.000Z', '2026-12-01T10:01:00.000Z', 1, 'x')"
    )
    rows = [  # the last summarised window is [10:00, 10:01): the old selection sent bins ending by 10:01
        ("cam0", "main", "nb", "car", "2026-12-01T10:01:00.000Z", 60, 4, 60.0),  # ends 10:02: never sent
        ("cam0", "main", "nb", "car", "2026-12-01T09:59:00.000Z", 60, 3, 60.0),  # ends 10:00: sent
    ]
    conn.executemany("INSERT INTO volume_bins VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute(
        "INSERT INTO zone_bins VALUES ('cam0', 'stop', '2026-12-01T09:59:00.000Z', 60, 1, 6.0, 1, 60.0)"
    )
    conn.execute("BEGIN")
    registered_components()["analytics"][1].apply(conn)
    conn.execute("COMMIT")
    seqs = dict(conn.execute("SELECT bin_start, change_seq FROM volume_bins"))
    assert sorted(seqs.values()) == [1, 3] and seqs["2026-12-01T10:01:00.000Z"] == 3
    assert summary_mark(conn, SUMMARY_MARK) == 2  # the two rows of the 09:59 bin were sent
    sec = analytics_section(conn, "2026-12-01T10:01:00.000Z", "2026-12-01T10:02:00.000Z")
    (b,) = sec["cameras"]["cam0"]["bins"]
    assert b["start"] == "2026-12-01T10:01:00.000Z" and b["rev"] == 3 and b["late"] is False
    assert bins_cursor(conn, 2) == 3
    # the triggers number every later insert and update
    conn.execute("UPDATE volume_bins SET count = count + 1 WHERE bin_start = '2026-12-01T09:59:00.000Z'")
    assert conn.execute(
        "SELECT change_seq FROM volume_bins WHERE count = 4 AND bin_start < '2026-12-01T10:00'"
    ).fetchone() == (4,)
    conn.close()


def _sent_radar(hub) -> list[tuple[int, dict]]:
    out = []
    for d in hub.payloads(SITE, DEV, "summary"):
        for c in ((d["sections"].get("incidents") or {}).get("cameras") or {}).values():
            out += [(d["seq"], b) for b in c["radar"]]
    return out


def test_a_radar_fusion_bin_committed_late_is_sent_and_amended(tmp_path, broker, hub, agents):
    """The incidents section's radar fusion bins follow change numbers too: a bin committed after its
    window went out is sent in the next summary (late), and a continued bin again with a higher rev."""
    from agent.analytics.incidents.store import upsert_fusion_bin

    cfg = agent_config(tmp_path, broker)
    a = agents(cfg).start()
    assert hub.wait_for(lambda h: len(h.seqs(SITE, DEV, "summary")) >= 2, 20)
    w_end = parse_iso(hub.payloads(SITE, DEV, "summary")[-1]["window"]["end"])
    fig = {
        "crossings": 4, "readings": 5, "matched": 3, "radar_unmatched": 2, "crossings_unmatched": 1,
        "radar_mean_kmh": 48.5, "vision_mean_kmh": 46.0, "mean_abs_diff_kmh": 2.5, "mean_ratio": 0.95,
    }  # fmt: skip
    a.writer.submit_fn(upsert_fusion_bin("cam0", "ops243", w_end - 60, 60, fig), kind="fusion", block=True)
    assert a.writer.flush(5)
    assert hub.wait_for(lambda h: len(_sent_radar(h)) == 1, 15), _sent_radar(hub)
    (seq, b) = _sent_radar(hub)[0]
    assert b["bin_start"] == iso_utc(w_end - 60) and b["crossings"] == 4 and b["late"] is True
    a.writer.submit_fn(upsert_fusion_bin("cam0", "ops243", w_end - 60, 60, fig), kind="fusion", block=True)
    assert a.writer.flush(5)
    assert hub.wait_for(lambda h: len(_sent_radar(h)) == 2, 15), _sent_radar(hub)
    (_, b2) = _sent_radar(hub)[1]
    assert b2["crossings"] == 8 and b2["rev"] > b["rev"]  # the whole bin again, a higher rev
    v = schema_validator("summary")
    for d in hub.payloads(SITE, DEV, "summary"):
        v.validate(d)
    a.stop()
    assert len(_sent_radar(hub)) == 2  # sent once per change, never again
