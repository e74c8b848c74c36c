"""Forecast on a synthetic multi-week history with daily and weekly patterns plus noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analytics.forecast import DAY, Forecaster, horizons_for

BIN = 900
T0 = 1_700_006_400 - (1_700_006_400 % DAY)  # a UTC midnight


def volume(ts: float, rng) -> float:
    tod = (ts % DAY) / DAY
    dow = ((int(ts) // DAY) + 3) % 7
    daily = (
        5
        + 60 * math.exp(-(((tod - 0.33) / 0.05) ** 2))
        + 45 * math.exp(-(((tod - 0.72) / 0.07) ** 2))
        + 25 * math.sin(math.pi * tod) ** 2
    )
    weekly = 0.45 if dow >= 5 else 1.0
    return float(rng.poisson(daily * weekly))


def test_forecast_beats_flat_mean_and_reports_its_own_backtest():
    rng = np.random.default_rng(7)
    f = Forecaster(BIN, backtest_days=7)
    series = {}
    mine: dict[int, list[float]] = {15: [], 30: [], 60: []}
    flat: dict[int, list[float]] = {15: [], 30: [], 60: []}
    issued: list = []
    n_bins = 28 * 96
    for k in range(n_bins):
        start = T0 + k * BIN
        series[start] = volume(start, rng)
        f.observe(start, series[start])
        issued += f.forecast(start + BIN)
    # score independently what the forecaster issued in the last 7 days, against a flat mean of the past
    end = T0 + n_bins * BIN
    hist = np.array(list(series.values()))
    for p in issued:
        if p.target_end > end or p.target_end < end - 7 * DAY:
            continue
        actual = sum(series[int(t)] for t in range(int(p.target_start), int(p.target_end), BIN))
        mine[p.horizon_min].append(abs(p.predicted - actual))
        past = hist[: int((p.target_start - T0) // BIN)]
        flat[p.horizon_min].append(abs(past.mean() * (p.horizon_min * 60 // BIN) - actual))
    skill = f.skill()
    for h in (15, 30, 60):
        assert skill[h]["n"] == len(mine[h]) > 600
        assert skill[h]["mae"] == pytest.approx(
            np.mean(mine[h]), rel=1e-9
        )  # the reported error is the real one
        assert np.mean(mine[h]) < 0.5 * np.mean(flat[h]), (h, np.mean(mine[h]), np.mean(flat[h]))
        assert skill[h]["mape"] is not None and 0 < skill[h]["mape"] < 60
    print(
        {
            h: (round(skill[h]["mae"], 2), round(np.mean(flat[h]), 2), round(skill[h]["mape"], 1))
            for h in (15, 30, 60)
        }
    )


def test_partial_bins_neither_teach_nor_score():
    f = Forecaster(BIN)
    f.observe(T0, 10)
    p = f.forecast(T0 + BIN)
    f.observe(T0 + BIN, 0, complete=False)
    assert T0 + BIN not in f.history
    f.observe(T0 + 2 * BIN, 10)
    assert all(x.actual is None for x in p) and f.skill()[15]["n"] == 0


def test_horizons_follow_the_bin_length():
    assert horizons_for(900) == [15, 30, 60]
    assert horizons_for(1800) == [30, 60]
    assert horizons_for(3600) == [60]
