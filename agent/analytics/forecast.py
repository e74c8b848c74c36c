"""Short-term flow forecast for one line and direction, with its own rolling backtest.

Method (seasonal profile x damped level correction):

1. **Seasonal profile** for a target bin: the mean of the same bin one, two, three and four weeks
   earlier (weekly pattern), and the mean of the same time of day over the last seven days of the
   same day type (weekday or weekend; daily pattern). With both, 0.6 x weekly + 0.4 x daily; with
   one, that one. Times are UTC, so daylight-saving changes shift the profile by an hour for a week.
2. **Level correction**: an exponentially smoothed ratio (alpha 0.3) of what was observed to what
   the profile expected over the latest bins, clipped to 0.5..2, damped towards 1 for bins further
   ahead (factor 0.8 per bin). It absorbs a day that runs busier or quieter than usual (events,
   weather, holidays) without chasing noise.
3. **No profile yet** (the first day): simple exponential smoothing of the bin volumes.

The forecast for "the next 15 / 30 / 60 minutes" is the sum of the expected volumes of the next
bins covering that horizon. Every forecast is kept until its bins have been observed, then scored:
the reported MAE and MAPE are over the forecasts scored in the last ``backtest_days`` (MAPE only
over windows with a non-zero volume). Partial bins (coverage under 95 %) neither feed the profile
nor score a forecast.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

DAY = 86400
WEEK = 7 * DAY
HORIZONS_MIN = (15, 30, 60)


@dataclass(slots=True)
class Prediction:
    issued: float
    horizon_min: int
    target_start: float
    target_end: float
    predicted: float
    actual: float | None = None


def horizons_for(bin_s: int) -> list[int]:
    """The horizons (minutes) a bin length can express: 15/30/60 where whole bins fit, else one bin."""
    out = [h for h in HORIZONS_MIN if (h * 60) % bin_s == 0]
    return out or [bin_s // 60]


class Forecaster:
    """Forecasts and backtests one series of bin volumes (one line, one direction)."""

    def __init__(
        self,
        bin_s: int,
        *,
        history_days: int = 35,
        backtest_days: float = 7.0,
        alpha: float = 0.3,
        damping: float = 0.8,
    ) -> None:
        self.bin_s = bin_s
        self.history_days = history_days
        self.backtest_s = backtest_days * DAY
        self.alpha = alpha
        self.damping = damping
        self.history: dict[int, float] = {}  # bin start -> volume (complete bins only)
        self.ratio = 1.0
        self.level: float | None = None
        self.pending: list[Prediction] = []
        self.scored: deque[Prediction] = deque()
        self.horizons = horizons_for(bin_s)

    # -- the profile -----------------------------------------------------------------------------
    def seasonal(self, start: float) -> float | None:
        """Expected volume of the bin starting at ``start`` from the weekly and daily patterns."""
        h = self.history
        key = int(start)
        weekly = [h[key - k * WEEK] for k in range(1, 5) if key - k * WEEK in h]
        wknd = _is_weekend(start)
        daily = [
            h[key - k * DAY]
            for k in range(1, 8)
            if key - k * DAY in h and _is_weekend(start - k * DAY) == wknd
        ]
        if weekly and daily:
            return 0.6 * sum(weekly) / len(weekly) + 0.4 * sum(daily) / len(daily)
        if weekly:
            return sum(weekly) / len(weekly)
        if daily:
            return sum(daily) / len(daily)
        return None

    def expected_bins(self, start: float, n: int) -> list[float]:
        """Expected volume of ``n`` bins from ``start`` (a bin boundary)."""
        out = []
        for k in range(n):
            s = self.seasonal(start + k * self.bin_s)
            if s is None:
                out.append(self.level if self.level is not None else 0.0)
            else:
                r = 1.0 + (self.ratio - 1.0) * self.damping ** (k + 1)
                out.append(max(0.0, s * r))
        return out

    # -- time moving on --------------------------------------------------------------------------
    def observe(self, start: float, volume: float, complete: bool = True) -> list[Prediction]:
        """A bin closed. Returns the forecasts this scored (their ``actual`` now set)."""
        if not complete:
            return []
        key = int(start)
        s = self.seasonal(start)
        if s is not None:
            obs_ratio = (volume + 1.0) / (s + 1.0)
            self.ratio = min(2.0, max(0.5, (1 - self.alpha) * self.ratio + self.alpha * obs_ratio))
        self.level = volume if self.level is None else (1 - self.alpha) * self.level + self.alpha * volume
        self.history[key] = float(volume)
        horizon_cut = key - self.history_days * DAY
        if len(self.history) > self.history_days * DAY // self.bin_s + 16:
            for k in [k for k in self.history if k < horizon_cut]:
                del self.history[k]
        return self._score(start + self.bin_s)

    def _score(self, now: float) -> list[Prediction]:
        done, still = [], []
        for p in self.pending:
            if p.target_end > now:
                still.append(p)
                continue
            vols = [self.history.get(int(t)) for t in _bins(p.target_start, p.target_end, self.bin_s)]
            if any(v is None for v in vols):
                continue  # a bin of its window is missing or partial: cannot be scored
            p.actual = float(sum(vols))  # type: ignore[arg-type]
            done.append(p)
            self.scored.append(p)
        self.pending = still
        while self.scored and self.scored[0].target_end < now - self.backtest_s:
            self.scored.popleft()
        return done

    def forecast(self, start: float, issued: float | None = None) -> list[Prediction]:
        """Forecast each horizon from ``start`` (the next bin boundary); remembered for scoring."""
        n_max = max(self.horizons) * 60 // self.bin_s
        exp = self.expected_bins(start, n_max)
        out = []
        for h in self.horizons:
            n = h * 60 // self.bin_s
            p = Prediction(
                issued if issued is not None else start, h, start, start + n * self.bin_s, float(sum(exp[:n]))
            )
            out.append(p)
            self.pending.append(p)
        return out

    def skill(self) -> dict[int, dict[str, float | int | None]]:
        """Rolling backtest per horizon: ``{15: {"mae": .., "mape": .. (percent), "n": ..}}``."""
        out: dict[int, dict[str, float | int | None]] = {}
        for h in self.horizons:
            ps = [p for p in self.scored if p.horizon_min == h and p.actual is not None]
            if not ps:
                out[h] = {"mae": None, "mape": None, "n": 0}
                continue
            errs = [abs(p.predicted - p.actual) for p in ps]  # type: ignore[operator]
            pct = [abs(p.predicted - p.actual) / p.actual for p in ps if p.actual]
            out[h] = {
                "mae": sum(errs) / len(errs),
                "mape": 100.0 * sum(pct) / len(pct) if pct else None,
                "n": len(ps),
            }
        return out


def _bins(start: float, end: float, bin_s: int) -> list[float]:
    return [start + k * bin_s for k in range(int(math.ceil((end - start) / bin_s)))]


def _is_weekend(ts: float) -> bool:
    return ((int(ts) // DAY) + 3) % 7 >= 5  # 1970-01-01 was a Thursday (weekday 3)
