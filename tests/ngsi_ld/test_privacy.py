"""Small-count protection in the NGSI-LD encoder: the same rule as the summaries', applied to what
leaves the unit only, declared on every entity; in dp mode the same bin always gets the same noise."""

from __future__ import annotations

import sqlite3

from agent.config import parse_config
from agent.ngsi_ld import encode, source
from agent.store.db import Database
from agent.timefmt import iso_utc
from tests.contract.ngsi import validate

START = 1_764_000_000 - 1_764_000_000 % 900


def _db(tmp_path) -> Database:
    db = Database(tmp_path / "agent.sqlite")
    rows = []
    for k in range(4):
        s = iso_utc(START + k * 900)
        rows += [
            ("road", "main", "in", "car", s, 900, 12, 900.0),
            ("road", "main", "in", "bicycle", s, 900, 1, 900.0),  # one cyclist: below k = 3
            ("road", "main", "in", "person", s, 900, 2, 900.0),
            ("road", "main", "out", "bicycle", s, 900, 5, 900.0),  # five: published
        ]
    db.conn.executemany(
        "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s) VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    return db


def _cfg(tmp_path, mode: str, **small) -> object:
    return parse_config(
        {
            "device": {"id": "pole-1", "site": "ring", "latitude": 52.5, "longitude": 13.4},
            "storage": {"path": str(tmp_path / "agent.sqlite")},
            "privacy": {"small_counts": {"mode": mode, **small}},
        }
    )


def _entities(db: Database, cfg) -> list[dict]:
    unit = encode.Unit("ring", "pole-1", 52.5, 13.4)
    return source.traffic(db.conn, cfg, iso_utc(START - 1), iso_utc(START + 4 * 900), unit)


def test_small_bins_never_leave_the_unit_and_the_rule_is_declared(tmp_path):
    db = _db(tmp_path)
    for mode in ("merge", "suppress"):
        ents = _entities(db, _cfg(tmp_path, mode))
        by_dir = {}
        for e in ents:
            by_dir.setdefault(e["id"].split(":")[-3], []).append(e)
        bikes_in = [e for e in by_dir["in"] if e.get("vehicleType") == "bicycle"]
        assert bikes_in == []  # 1 cyclist < k: not published in any form
        total_in = next(e for e in by_dir["in"] if e["id"].endswith(":all"))
        assert total_in["intensity"] == 12  # the cyclist is not hidden inside the total either
        bikes_out = [e for e in by_dir["out"] if e.get("vehicleType") == "bicycle"]
        assert [e["intensity"] for e in bikes_out] == [5] * 4
        assert not any("person" in e["id"] for e in ents)  # people are never traffic flow
        assert all(e["privacyProtection"]["mode"] == mode for e in ents)
        assert validate(ents, tmp_path, "--check-formats").returncode == 0
        assert (
            validate(
                [encode.normalized(e) for e in ents], tmp_path, "--check-formats", "--form", "normalized"
            ).returncode
            == 0
        )
    # the local database keeps the true counts
    c = sqlite3.connect(db.path)
    assert (
        c.execute(
            "SELECT SUM(count) FROM volume_bins WHERE class = 'bicycle' AND direction = 'in'"
        ).fetchone()[0]
        == 4
    )
    c.close()


def test_dp_noise_is_the_same_for_the_same_bin_so_repeats_cannot_average_it_away(tmp_path):
    db = _db(tmp_path)
    cfg = _cfg(tmp_path, "dp", epsilon=0.5)
    first = {e["id"]: e["intensity"] for e in _entities(db, cfg)}
    again = {e["id"]: e["intensity"] for e in _entities(db, cfg)}
    assert first == again
    bikes = [v for k, v in first.items() if k.endswith(":bicycle")]
    assert all(v >= 0 for v in bikes)  # clamped for the data model, as declared
    assert any(v not in (1, 5) for v in bikes), first  # noise was added (epsilon 0.5: scale 2)
    cars = [v for k, v in first.items() if k.endswith(":car")]
    assert cars == [12] * 4  # vehicles are not protected by default: exact
    ents = _entities(db, cfg)
    assert "negative" in ents[0]["privacyProtection"]["note"]
    assert validate(ents, tmp_path, "--check-formats").returncode == 0
