"""Small-count protection: bins below k never leave the unit, the local database keeps the truth, and
the differential-privacy mode is unbiased with noise of the configured epsilon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import agent.analytics.summary  # noqa: F401  (registers the analytics section)
import agent.sync.sections_core  # noqa: F401  (registers the counts section)
from agent.privacy.config import SmallCountConfig
from agent.privacy.smallcount import protect_bins, protect_summary
from agent.store.db import Database
from agent.sync.summary import SummaryBuilder
from agent.sync.topics import SCHEMA_VERSION, SCHEMAS, Topics
from agent.timefmt import iso_utc
from tests.sync.conftest import schema_validator

DATA = Path(__file__).resolve().parents[1] / "data"


def _bin(cls: str, n: int, line: str = "main", d: str = "in") -> dict:
    return {"camera": "c", "line": line, "direction": d, "class": cls, "count": n}


def test_suppress_leaves_out_small_bins_of_protected_classes_only():
    cfg = SmallCountConfig(mode="suppress")
    bins = [
        _bin("person", 2),
        _bin("person", 3, d="out"),
        _bin("person", 0, line="x"),
        _bin("car", 1),
        _bin("bicycle", 1),
    ]
    before = json.dumps(bins)
    out, decl = protect_bins(bins, cfg)
    assert json.dumps(bins) == before  # the input (the local truth) is untouched
    assert out == [_bin("person", 3, d="out"), _bin("car", 1)]
    assert decl == {
        "scheme": "edge-agent/small-counts/1",
        "mode": "suppress",
        "k": {"bicycle": 3, "person": 3},
        "absent_means": "0 or below k",
    }


def test_merge_adds_small_bins_of_a_group_into_a_coarser_class():
    cfg = SmallCountConfig()  # merge is the default
    bins = [
        _bin("person", 2),
        _bin("bicycle", 2),
        _bin("car", 1),  # group in: 2 + 2 = 4 >= 3, merged
        _bin("person", 1, d="out"),
        _bin("bicycle", 1, d="out"),  # group out: 1 + 1 = 2 < 3, left out
        _bin("person", 5, line="b"),
        _bin("bicycle", 1, line="b"),  # person kept, bicycle alone < 3
    ]
    out, decl = protect_bins(bins, cfg)
    assert out == [_bin("car", 1), _bin("other_protected", 4), _bin("person", 5, line="b")]
    assert decl["mode"] == "merge" and decl["merge_class"] == "other_protected"
    for b in out:
        assert not (b["class"] in cfg.k and b["count"] < cfg.k[b["class"]])


def test_custom_k_and_off():
    out, _ = protect_bins(
        [_bin("person", 4), _bin("car", 2)], SmallCountConfig(mode="suppress", k={"person": 5, "car": 3})
    )
    assert out == []
    out, decl = protect_bins([_bin("person", 1)], SmallCountConfig(mode="off"))
    assert out == [_bin("person", 1)] and decl == {"scheme": "edge-agent/small-counts/1", "mode": "off"}


def _rounded_laplace(b: float) -> tuple[float, float]:
    """E|N| and Var N of N = round(X), X ~ Laplace(0, b): P(N = n) = (e^-(n-1/2)/b - e^-(n+1/2)/b) / 2, n >= 1."""
    n = np.arange(1, 2000)
    p = 0.5 * (np.exp(-(n - 0.5) / b) - np.exp(-(n + 0.5) / b))
    return float(2 * (n * p).sum()), float(2 * (n * n * p).sum())


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0])
def test_dp_is_unbiased_and_its_noise_matches_epsilon(eps):
    cfg = SmallCountConfig(mode="dp", epsilon=eps)
    truth = [_bin("person", 0), _bin("person", 1, d="out"), _bin("bicycle", 7), _bin("car", 12)]
    runs = 4000
    got = np.array(
        [
            [b["count"] for b in protect_bins(truth, cfg, rng=np.random.default_rng(seed))[0]]
            for seed in range(runs)
        ]
    )
    true = np.array([b["count"] for b in truth])
    noise = got[:, :3] - true[:3]
    # unbiased: the mean over runs is the truth (within 4 standard errors of the Laplace(1/eps) + rounding noise)
    se = np.sqrt(2 / eps**2 + 1 / 12) / np.sqrt(runs)
    assert np.all(np.abs(noise.mean(axis=0)) < 4 * se), noise.mean(axis=0)
    # the noise is Laplace with scale 1/eps, rounded: its mean |noise| and variance match that law's
    mad, var = _rounded_laplace(1 / eps)
    assert np.abs(noise).mean() == pytest.approx(mad, rel=0.06)
    assert noise.var() == pytest.approx(var, rel=0.1)
    assert np.all(got[:, 3] == 12)  # vehicles are exact
    assert (got[:, :3] != true[:3]).any(axis=1).mean() > 0.3  # and protected ones really are noisy
    decl = protect_bins(truth, cfg)[1]
    assert decl["mode"] == "dp" and decl["epsilon"] == eps and decl["scale"] == pytest.approx(1 / eps)


def test_dp_utility_cost_on_the_clips_counts():
    """What epsilon costs on the clips' true counts: 6 people on the Intel clip, 37 and 35 vehicles on
    the motorway clip (if vehicles were protected); mean absolute error over seeded runs."""
    people = json.loads((DATA / "intel_person_counts.json").read_text())["crossings"]
    motorway = json.loads((DATA / "4ku_traffic_counts.json").read_text())["crossings"]
    n_people, away, toward = len(people["right"]), len(motorway["away"]), len(motorway["toward"])
    assert (n_people, away, toward) == (6, 37, 35)
    truth = [_bin("person", n_people), _bin("person", away, d="away"), _bin("person", toward, d="toward")]
    for eps in (0.1, 0.5, 1.0, 2.0):
        cfg = SmallCountConfig(mode="dp", epsilon=eps)
        errs = np.array(
            [
                [
                    abs(b["count"] - t["count"])
                    for b, t in zip(protect_bins(truth, cfg, rng=np.random.default_rng(s))[0], truth)
                ]
                for s in range(2000)
            ]
        )
        mae = errs.mean(axis=0)
        print(
            f"epsilon {eps}: mean abs error {mae[0]:.2f} on 6 people ({100 * mae[0] / 6:.0f} %), "
            f"{mae[1]:.2f} on 37 vehicles ({100 * mae[1] / 37:.1f} %), {mae[2]:.2f} on 35 ({100 * mae[2] / 35:.1f} %)"
        )
        assert mae.mean() == pytest.approx(_rounded_laplace(1 / eps)[0], rel=0.1)


# -- the summary encoder over a real database ------------------------------------------------------

T0 = 1_800_000_000.0  # a UTC 15-minute boundary


def _fill(db: Database) -> None:
    c = db.conn
    c.execute("BEGIN")
    crossings = [
        ("person", "in", 2),
        ("person", "out", 4),
        ("bicycle", "in", 1),
        ("car", "in", 1),
        ("car", "out", 9),
    ]
    i = 0
    for cls, d, n in crossings:
        for _ in range(n):
            i += 1
            c.execute(
                "INSERT INTO crossings (ts, camera, line, direction, class, track_id, x, y) VALUES (?, 'c', 'main', ?, ?, ?, 0, 0)",
                (iso_utc(T0 + i), d, cls, i),
            )
        c.execute(
            "INSERT INTO volume_bins (camera, line, direction, class, bin_start, bin_s, count, coverage_s)"
            " VALUES ('c', 'main', ?, ?, ?, 900, ?, 900)",
            (d, cls, iso_utc(T0), n),
        )
    for label, objects in (("person", 2), ("car", 1), ("bicycle", 5)):
        for k in range(objects):
            c.execute(
                "INSERT INTO detections (ts, camera, frame, model, label, class_id, score, x1, y1, x2, y2, track_id)"
                " VALUES (?, 'c', ?, 'm', ?, 0, 0.9, 1, 2, 3, 4, ?)",
                (iso_utc(T0 + 10 + k), k, label, 100 + k),
            )
    c.execute("COMMIT")


def _summary(db: Database, cfg) -> dict:
    b = SummaryBuilder(
        interval_s=900,
        writer=None,
        reader=lambda: Database.reader(db),
        topics=Topics("city", "s", "u"),
        clock=lambda: T0 + 901,
        small_counts=cfg,
    )
    conn = db.reader()
    try:
        return b.body(conn, T0, T0 + 900, catchup=False)
    finally:
        conn.close()


def _published(doc: dict) -> list[tuple[str, str, int]]:
    an = doc["sections"]["analytics"]["cameras"]["c"]
    out = [("volumes", cls, n) for d in an["volumes"]["main"].values() for cls, n in d.items()]
    out += [
        ("bins", cls, n)
        for b in an["bins"]
        for d in b["counts"].get("main", {}).values()
        for cls, n in d.items()
    ]
    out += [
        ("counts", lab, v["objects"])
        for lab, v in doc["sections"]["counts"]["cameras"]["c"]["labels"].items()
    ]
    return out


def test_summaries_never_carry_bins_below_k_and_the_database_keeps_the_truth(tmp_path):
    db = Database(tmp_path / "agent.sqlite")
    _fill(db)
    validate = schema_validator("summary")
    for mode in ("suppress", "merge"):
        cfg = SmallCountConfig(mode=mode)
        doc = _summary(db, cfg)
        pub = _published(doc)
        for where, cls, n in pub:
            assert not (cls in cfg.k and n < cfg.k[cls]), (mode, where, cls, n)
        vols = doc["sections"]["analytics"]["cameras"]["c"]["volumes"]["main"]
        assert vols["in"].get("car") == 1 and vols["out"] == {"car": 9, "person": 4}  # vehicles and k+ exact
        assert "person" not in vols["in"] and "bicycle" not in vols["in"]
        assert doc["sections"]["counts"]["cameras"]["c"]["labels"]["bicycle"]["objects"] == 5
        assert doc["privacy"]["small_counts"]["mode"] == mode
        # as enqueue and publish complete it (schema, version, seq; session at publish)
        validate.validate(
            {**doc, "schema": SCHEMAS["summary"], "schema_version": SCHEMA_VERSION, "seq": 1, "session": 1}
        )
        if mode == "merge":  # in: person 2 + bicycle 1 = 3 >= 3 -> one coarser bin
            assert vols["in"]["other_protected"] == 3
        else:
            assert "other_protected" not in json.dumps(doc)
    # the local database still holds every true count
    conn = db.reader()
    try:
        assert (
            conn.execute(
                "SELECT count(*) FROM crossings WHERE class = 'person' AND direction = 'in'"
            ).fetchone()[0]
            == 2
        )
        assert conn.execute("SELECT count FROM volume_bins WHERE class = 'bicycle'").fetchone()[0] == 1
        assert (
            conn.execute("SELECT count(DISTINCT track_id) FROM detections WHERE label = 'person'").fetchone()[
                0
            ]
            == 2
        )
    finally:
        conn.close()
    off = _summary(db, None)
    assert ("volumes", "person", 2) in _published(off) and off["privacy"]["small_counts"]["mode"] == "off"


def test_dp_summary_declares_the_rule_and_publishes_zeros_too(tmp_path):
    db = Database(tmp_path / "agent.sqlite")
    _fill(db)
    doc = _summary(db, SmallCountConfig(mode="dp", epsilon=1.0))
    vols = doc["sections"]["analytics"]["cameras"]["c"]["volumes"]["main"]
    assert set(vols["in"]) == {"person", "bicycle", "car"} and set(vols["out"]) == {
        "person",
        "bicycle",
        "car",
    }
    assert vols["out"]["car"] == 9 and vols["in"]["car"] == 1
    assert doc["privacy"]["small_counts"]["mechanism"] == "laplace"
    assert doc["sections"]["counts"]["cameras"]["c"]["labels"]["person"]["detections"] is None


def test_protect_summary_leaves_its_input_alone():
    sections = {"analytics": {"cameras": {"c": {"volumes": {"l": {"in": {"person": 1}}}, "bins": []}}}}
    before = json.dumps(sections)
    out, _ = protect_summary(sections, SmallCountConfig())
    assert json.dumps(sections) == before and out["analytics"]["cameras"]["c"]["volumes"] == {}
