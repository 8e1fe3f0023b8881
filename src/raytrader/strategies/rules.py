"""Built-in rule strategies and benchmarks. Indicators come from TA-Lib; every rule is causal.

All are "stop-and-reverse" state machines: an entry event sets the target, it is held until the next
event, and ``short=False`` turns short targets into flat. :data:`BUILTIN` lists them; the
``raytrader.strategies`` package registers them when it is imported.

=================  ==========================================================================
ma_cross           +1 when SMA(fast) crosses above SMA(slow), -1 when it crosses below (a cross
                   is ``fast[t-1] < slow[t-1]`` and ``fast[t] > slow[t]``, as backtesting.py's
                   ``crossover``); flat before the first cross
rsi                +1 when RSI(period) < lower (oversold), -1 when RSI > upper (overbought)
macd               sign of the MACD histogram (line - signal)
bollinger          +1 when close < lower band, -1 when close > upper band, flat when the close
                   crosses the middle band
momentum           +1 when the period return > threshold, -1 when < -threshold, else flat
mean_reversion     z = (close - SMA) / STDDEV over period; +1 when z < -entry_z, -1 when
                   z > entry_z, flat when |z| < exit_z
buy_and_hold       +1 on every bar
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba as nb
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from raytrader.sim.kernel import Twins
from raytrader.strategies.base import Strategy, StrategyParams


def _sided(side: np.ndarray, short: bool) -> np.ndarray:
    """A -1/0/+1 side as a target: short targets become flat without ``short``; NaN (the side
    is unknown: a feature it is read from is NaN) stays NaN, the member is missing there."""
    return side if short else np.maximum(side, 0.0)


def _close(frame: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(frame["close"].to_numpy(dtype=np.float64))


class MaCrossParams(StrategyParams):
    fast: int = Field(default=10, ge=1, le=10_000)
    slow: int = Field(default=20, ge=2, le=10_000)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class MaCross(Strategy):
    name = "ma_cross"
    Params = MaCrossParams
    description = "fast/slow SMA crossover, stop-and-reverse"
    params: MaCrossParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        import talib

        c = _close(frame)
        smas = np.vstack((talib.SMA(c, self.params.fast), talib.SMA(c, self.params.slow)))
        held = _CROSS_ROWS(1, smas, _PAIR_FAST, _PAIR_SLOW, np.array([self.params.short]))
        return pd.Series(held[0], index=frame.index, name=self.name)

    def feature_targets(self, features: pd.DataFrame) -> np.ndarray | None:
        """After the first cross the held target is the side of fast vs slow SMA, which the
        features carry for periods 10, 20 and 50; NaN (missing) where either SMA is NaN."""
        fast, slow = f"sma_{self.params.fast}", f"sma_{self.params.slow}"
        if fast not in features.columns or slow not in features.columns:
            return None
        side = np.sign(features[fast].to_numpy(np.float64) - features[slow].to_numpy(np.float64))
        return _sided(side, self.params.short)

    @classmethod
    def target_rows(cls, frame: pd.DataFrame, param_sets: Sequence[StrategyParams]) -> np.ndarray:
        import talib

        sets = [p for p in param_sets if isinstance(p, MaCrossParams)]
        if len(sets) != len(param_sets):
            return super().target_rows(frame, param_sets)
        c = _close(frame)
        windows = sorted({p.fast for p in sets} | {p.slow for p in sets})
        where = {w: i for i, w in enumerate(windows)}
        smas = np.vstack([talib.SMA(c, w) for w in windows])
        fast = np.array([where[p.fast] for p in sets], dtype=np.int64)
        slow = np.array([where[p.slow] for p in sets], dtype=np.int64)
        shorts = np.array([p.short for p in sets], dtype=np.bool_)
        out: np.ndarray = _CROSS_ROWS(len(sets), smas, fast, slow, shorts)
        return out


def _cross_rows(
    smas: np.ndarray, fast: np.ndarray, slow: np.ndarray, shorts: np.ndarray
) -> np.ndarray:
    """Held stop-and-reverse targets of many (fast, slow) pairs, one row each: +1 from a cross up
    (``fast[t-1] < slow[t-1]`` and ``fast[t] > slow[t]``), -1 (0 without ``short``) from a cross down,
    flat before the first cross. NaN (warm-up) never crosses."""
    k = fast.shape[0]
    n = smas.shape[1]
    out = np.empty((k, n))
    for j in nb.prange(k):
        f = smas[fast[j]]
        s = smas[slow[j]]
        held = 0.0
        out[j, 0] = 0.0
        for i in range(1, n):
            if f[i - 1] < s[i - 1] and f[i] > s[i]:
                held = 1.0
            elif f[i - 1] > s[i - 1] and f[i] < s[i]:
                held = -1.0 if shorts[j] else 0.0
            out[j, i] = held
    return out


_CROSS_ROWS = Twins(_cross_rows)
_PAIR_FAST = np.array([0], dtype=np.int64)
_PAIR_SLOW = np.array([1], dtype=np.int64)


class RsiParams(StrategyParams):
    period: int = Field(default=14, ge=2, le=1000)
    lower: float = Field(default=30.0, gt=0.0, lt=100.0)
    upper: float = Field(default=70.0, gt=0.0, lt=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> RsiParams:
        if self.lower >= self.upper:
            raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
        return self


class Rsi(Strategy):
    name = "rsi"
    Params = RsiParams
    description = "RSI oversold/overbought reversal"
    params: RsiParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        import talib

        rsi = talib.RSI(_close(frame), self.params.period)
        with np.errstate(invalid="ignore"):
            ev = np.where(
                rsi < self.params.lower, 1.0, np.where(rsi > self.params.upper, -1.0, np.nan)
            )
        return self._finish(frame, ev)


class MacdParams(StrategyParams):
    fast: int = Field(default=12, ge=2, le=1000)
    slow: int = Field(default=26, ge=3, le=1000)
    signal: int = Field(default=9, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> MacdParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class Macd(Strategy):
    name = "macd"
    Params = MacdParams
    description = "sign of the MACD histogram"
    params: MacdParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        import talib

        _, _, hist = talib.MACD(
            _close(frame), self.params.fast, self.params.slow, self.params.signal
        )
        ev = np.where(np.isnan(hist), np.nan, np.sign(hist))
        return self._finish(frame, ev)

    def feature_targets(self, features: pd.DataFrame) -> np.ndarray | None:
        """Every bar is an event (the histogram's sign), so the held target is that sign; the
        features carry the histogram for the default 12/26/9. NaN (missing) where it is NaN."""
        p = self.params
        if (p.fast, p.slow, p.signal) != (12, 26, 9) or "macd_hist" not in features.columns:
            return None
        return _sided(np.sign(features["macd_hist"].to_numpy(np.float64)), p.short)


class BollingerParams(StrategyParams):
    period: int = Field(default=20, ge=2, le=1000)
    nbdev: float = Field(default=2.0, gt=0.0, le=10.0)


class Bollinger(Strategy):
    name = "bollinger"
    Params = BollingerParams
    description = "Bollinger band mean reversion, exit at the middle band"
    params: BollingerParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        import talib

        c = _close(frame)
        upper, middle, lower = talib.BBANDS(
            c, self.params.period, self.params.nbdev, self.params.nbdev
        )
        prev_c = np.roll(c, 1)
        prev_m = np.roll(middle, 1)
        with np.errstate(invalid="ignore"):
            cross_mid = ((prev_c < prev_m) & (c >= middle)) | ((prev_c > prev_m) & (c <= middle))
            cross_mid[:1] = False
            ev = np.where(
                c < lower, 1.0, np.where(c > upper, -1.0, np.where(cross_mid, 0.0, np.nan))
            )
        return self._finish(frame, ev)


class MomentumParams(StrategyParams):
    period: int = Field(default=20, ge=1, le=1000)
    threshold: float = Field(default=0.0, ge=0.0, lt=10.0)


class Momentum(Strategy):
    name = "momentum"
    Params = MomentumParams
    description = "time-series momentum on the period return"
    params: MomentumParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        import talib

        roc = talib.ROCP(_close(frame), self.params.period)
        th = self.params.threshold
        with np.errstate(invalid="ignore"):
            ev = np.where(
                np.isnan(roc), np.nan, np.where(roc > th, 1.0, np.where(roc < -th, -1.0, 0.0))
            )
        return self._finish(frame, ev)


class MeanReversionParams(StrategyParams):
    period: int = Field(default=20, ge=2, le=1000)
    entry_z: float = Field(default=2.0, gt=0.0, le=10.0)
    exit_z: float = Field(default=0.5, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _ordered(self) -> MeanReversionParams:
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be below entry_z ({self.entry_z})")
        return self


class MeanReversion(Strategy):
    name = "mean_reversion"
    Params = MeanReversionParams
    description = "z-score of the close around its SMA"
    params: MeanReversionParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        import talib

        c = _close(frame)
        sma = talib.SMA(c, self.params.period)
        sd = talib.STDDEV(c, self.params.period, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(sd > 0, (c - sma) / sd, 0.0)
            z = np.where(np.isnan(sma) | np.isnan(sd), np.nan, z)
            ev = np.where(
                z < -self.params.entry_z,
                1.0,
                np.where(
                    z > self.params.entry_z,
                    -1.0,
                    np.where(np.abs(z) < self.params.exit_z, 0.0, np.nan),
                ),
            )
        return self._finish(frame, ev)


class BuyAndHoldParams(StrategyParams):
    short: bool = False


class BuyAndHold(Strategy):
    name = "buy_and_hold"
    Params = BuyAndHoldParams
    description = "long from the first bar (benchmark)"

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        return pd.Series(1.0, index=frame.index, name=self.name)

    def feature_targets(self, features: pd.DataFrame) -> np.ndarray | None:
        return np.ones(len(features))


#: the built-in rules, in the table's order; ``raytrader.strategies`` registers them
BUILTIN: tuple[type[Strategy], ...] = (
    MaCross,
    Rsi,
    Macd,
    Bollinger,
    Momentum,
    MeanReversion,
    BuyAndHold,
)
