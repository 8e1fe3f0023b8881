"""Causal market-regime detection: seven regimes from one ``bar_features_v1`` row and a small
per-symbol state.

The regimes, checked in this order (the first whose conditions hold is the bar's *candidate*):

1. ``crisis`` — the close is ``crisis_drawdown`` or more below its running peak (the highest close
   of the last ``peak_bars``) and ``volatility_20`` is at or above the ``crisis_vol_quantile`` of
   its own history;
2. ``breakout`` — the close leaves the Bollinger band (``bb_pctb`` > 1 or < 0) after a squeeze (the
   previous bar's ``bb_width`` at or below the ``squeeze_quantile`` of its history) on volume
   (``volume_ratio_20`` ≥ ``breakout_volume_ratio``);
3. ``reversal`` — RSI leaves overbought or oversold (``rsi_14_lag1`` above ``rsi_high`` and
   ``rsi_14`` at or below it, or the mirror at ``rsi_low``) while the 5-bar return disagrees in
   sign with the 20-bar one;
4. to 7. the volatility/drift state. Once ``hmm_min_bars`` returns are known, a Gaussian HMM of
   ``hmm_states`` states of the 1-bar log return (:mod:`raytrader.meta.hmm`), refitted every
   ``hmm_refit_bars`` bars on the returns known then and read through its forward filter: the
   most probable state, ranked by volatility, is ``low_vol_range`` when it is the calmest,
   ``high_vol_range`` when it is the most volatile, and in between ``trending_bull`` or
   ``trending_bear`` as its fitted drift points. Before that, quantile bands of ``volatility_20``:
   at or below ``low_vol_quantile`` a low-volatility range, at or above ``high_vol_quantile`` a
   high-volatility range, in between a trend whose direction is the drift's t-statistic over
   ``trend_bars`` bars, tilted toward bear by ``vol_tilt`` the higher the volatility in the band.

Every quantile is of an expanding window of values known at the bar (the state keeps them sorted),
and the HMM sees only returns up to the bar, so a regime never depends on a later bar: the detector
is causal by construction, and the batch path (:func:`detect_regimes`) runs the same per-bar
update the online path does.

The persistent regimes (1, 4–7) switch only after the same candidate held for ``hysteresis`` bars in
a row; an event (breakout, reversal) is the regime of the bar it fires on and the persistent
regime resumes the bar after. Each reading carries a confidence in [0, 1] (the HMM state's filtered
probability, or how far the binding condition is past its threshold) and the rule that fired,
with the values.

A row with a missing input (the features' warm-up) or a volatility history shorter than
``min_history`` gives no reading (``regime`` None) and leaves the state untouched — the same rule
as a member without a decision.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError
from raytrader.meta.hmm import HmmParams, filter_probabilities, filter_step, fit_hmm

REGIMES = (
    "trending_bull",
    "trending_bear",
    "high_vol_range",
    "low_vol_range",
    "breakout",
    "reversal",
    "crisis",
)
EVENTS = frozenset({"breakout", "reversal"})
# the bar_features_v1 columns the detector reads
INPUTS = (
    "logret_1",
    "ret_5",
    "ret_20",
    "volatility_20",
    "hist_vol_60",
    "ema_10_50_ratio",
    "rsi_14",
    "rsi_14_lag1",
    "bb_pctb",
    "bb_width",
    "volume_ratio_20",
)


class RegimeConfig(StrictConfig):
    """Thresholds of the regime rules (fixed a priori; see the module docstring)."""

    crisis_drawdown: float = Field(0.20, gt=0, lt=1)
    crisis_vol_quantile: float = Field(0.95, gt=0, lt=1)
    peak_bars: int = Field(252, ge=2)
    squeeze_quantile: float = Field(0.10, gt=0, lt=1)
    breakout_volume_ratio: float = Field(2.0, gt=0)
    rsi_high: float = Field(80.0, gt=50, lt=100)
    rsi_low: float = Field(20.0, gt=0, lt=50)
    trend_bars: int = Field(50, ge=2)
    vol_tilt: float = Field(1.0, ge=0)
    low_vol_quantile: float = Field(0.25, gt=0, lt=1)
    high_vol_quantile: float = Field(0.75, gt=0, lt=1)
    min_history: int = Field(60, ge=1)
    hysteresis: int = Field(7, ge=1)
    # the volatility/drift state from a Gaussian HMM of log returns (forward filter, refitted on
    # the returns known at every refit_bars-th bar); 0 states: quantile bands of volatility_20
    hmm_states: int = Field(4, ge=0, le=6)
    hmm_min_bars: int = Field(250, ge=50)
    hmm_refit_bars: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RegimeConfig:
        if not self.low_vol_quantile < self.high_vol_quantile < self.crisis_vol_quantile:
            raise ValueError(
                f"the quantiles must rise: low_vol_quantile ({self.low_vol_quantile}) < "
                f"high_vol_quantile ({self.high_vol_quantile}) < crisis_vol_quantile "
                f"({self.crisis_vol_quantile})"
            )
        return self


@dataclass(frozen=True)
class RegimeReading:
    """One bar's regime: ``regime`` None when the bar gives no reading (see the module docstring)."""

    regime: str | None
    confidence: float
    rule: str
    candidate: str | None  # the bar's own regime, before hysteresis


NO_READING = RegimeReading(regime=None, confidence=0.0, rule="no reading", candidate=None)


def _squash(margin: float, scale: float) -> float:
    """A margin past a threshold, in units of ``scale``, mapped to [0, 1)."""
    return math.tanh(max(margin, 0.0) / scale)


@dataclass
class RegimeState:
    """What the detector keeps per symbol between bars (plain lists: serializable)."""

    vol_history: list[float] = field(default_factory=list)  # sorted
    width_history: list[float] = field(default_factory=list)  # sorted
    closes: deque[float] = field(default_factory=deque)  # the last peak_bars closes
    previous_width: float | None = None
    regime: str | None = None  # the persistent regime
    pending: str | None = None
    pending_bars: int = 0
    last_time: pd.Timestamp | None = None
    last_reading: RegimeReading = NO_READING
    returns: list[float] = field(default_factory=list)  # log returns, in time order
    hmm: HmmParams | None = None
    hmm_probabilities: np.ndarray | None = None
    bars_since_fit: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what a restarted or swapped replica needs to continue bit for bit (floats
        survive JSON exactly: ``repr`` round-trips)."""
        hmm = None
        if self.hmm is not None:
            hmm = {
                "start": self.hmm.start.tolist(),
                "transition": self.hmm.transition.tolist(),
                "mean": self.hmm.mean.tolist(),
                "sigma": self.hmm.sigma.tolist(),
                "log_likelihood": self.hmm.log_likelihood,
                "iterations": self.hmm.iterations,
            }
        reading = self.last_reading
        return {
            "vol_history": list(self.vol_history),
            "width_history": list(self.width_history),
            "closes": list(self.closes),
            "previous_width": self.previous_width,
            "regime": self.regime,
            "pending": self.pending,
            "pending_bars": self.pending_bars,
            "last_time": None if self.last_time is None else self.last_time.isoformat(),
            "last_reading": [reading.regime, reading.confidence, reading.rule, reading.candidate],
            "returns": list(self.returns),
            "hmm": hmm,
            "hmm_probabilities": None
            if self.hmm_probabilities is None
            else self.hmm_probabilities.tolist(),
            "bars_since_fit": self.bars_since_fit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegimeState:
        try:
            hmm = data["hmm"]
            probabilities = data["hmm_probabilities"]
            regime, confidence, rule, candidate = data["last_reading"]
            return cls(
                vol_history=[float(v) for v in data["vol_history"]],
                width_history=[float(v) for v in data["width_history"]],
                closes=deque(float(v) for v in data["closes"]),
                previous_width=data["previous_width"],
                regime=data["regime"],
                pending=data["pending"],
                pending_bars=int(data["pending_bars"]),
                last_time=None if data["last_time"] is None else pd.Timestamp(data["last_time"]),
                last_reading=RegimeReading(regime, float(confidence), str(rule), candidate),
                returns=[float(v) for v in data["returns"]],
                hmm=None
                if hmm is None
                else HmmParams(
                    start=np.asarray(hmm["start"], dtype=np.float64),
                    transition=np.asarray(hmm["transition"], dtype=np.float64),
                    mean=np.asarray(hmm["mean"], dtype=np.float64),
                    sigma=np.asarray(hmm["sigma"], dtype=np.float64),
                    log_likelihood=float(hmm["log_likelihood"]),
                    iterations=int(hmm["iterations"]),
                ),
                hmm_probabilities=None
                if probabilities is None
                else np.asarray(probabilities, dtype=np.float64),
                bars_since_fit=int(data["bars_since_fit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a saved regime state is malformed: {exc!r}") from exc


def _rank(sorted_values: list[float], value: float) -> float:
    """The fraction of ``sorted_values`` strictly below ``value``."""
    return bisect.bisect_left(sorted_values, value) / len(sorted_values)


class RegimeDetector:
    """The per-bar detector. ``update`` once per bar, in time order; a repeated bar time returns
    the reading already given (idempotent), an earlier one is an error."""

    def __init__(self, config: RegimeConfig | None = None) -> None:
        self.config = config or RegimeConfig()
        self.state = RegimeState()

    def update(
        self, row: Mapping[str, float], close: float, time: pd.Timestamp | None = None
    ) -> RegimeReading:
        state, cfg = self.state, self.config
        if time is not None and state.last_time is not None:
            if time == state.last_time:
                return state.last_reading
            if time < state.last_time:
                raise ConfigError(
                    f"regime update at {time} is before the last one at {state.last_time}"
                )
        values = {name: float(row[name]) for name in INPUTS}
        if not math.isfinite(close) or any(not math.isfinite(v) for v in values.values()):
            return NO_READING
        state.last_time = time
        vol = values["volatility_20"]
        bisect.insort(state.vol_history, vol)
        bisect.insort(state.width_history, values["bb_width"])
        state.closes.append(close)
        if len(state.closes) > cfg.peak_bars:
            state.closes.popleft()
        previous_width, state.previous_width = state.previous_width, values["bb_width"]
        if cfg.hmm_states:
            self._update_hmm(values["logret_1"])
        if len(state.vol_history) < cfg.min_history:
            state.last_reading = NO_READING
            return NO_READING

        candidate, confidence, rule = self._candidate(values, previous_width)
        if candidate in EVENTS:
            reading = RegimeReading(candidate, confidence, rule, candidate)
        else:
            reading = self._persist(candidate, confidence, rule)
        state.last_reading = reading
        return reading

    def _update_hmm(self, r: float) -> None:
        state, cfg = self.state, self.config
        state.returns.append(r)
        state.bars_since_fit += 1
        due = state.hmm is None or state.bars_since_fit >= cfg.hmm_refit_bars
        if due and len(state.returns) >= cfg.hmm_min_bars:
            returns = np.asarray(state.returns)
            state.hmm = fit_hmm(returns, cfg.hmm_states)
            state.hmm_probabilities = filter_probabilities(returns, state.hmm)[-1]
            state.bars_since_fit = 0
        elif state.hmm is not None and state.hmm_probabilities is not None:
            state.hmm_probabilities = filter_step(state.hmm_probabilities, r, state.hmm)

    def _persist(self, candidate: str, confidence: float, rule: str) -> RegimeReading:
        state, cfg = self.state, self.config
        if state.regime is None or candidate == state.regime:
            state.regime, state.pending, state.pending_bars = candidate, None, 0
            return RegimeReading(candidate, confidence, rule, candidate)
        if candidate == state.pending:
            state.pending_bars += 1
        else:
            state.pending, state.pending_bars = candidate, 1
        if state.pending_bars >= cfg.hysteresis:
            state.regime, state.pending, state.pending_bars = candidate, None, 0
            return RegimeReading(candidate, confidence, rule, candidate)
        held = f"{state.regime} held: {candidate} for {state.pending_bars} of {cfg.hysteresis} bars"
        return RegimeReading(state.regime, 0.0, f"{held} ({rule})", candidate)

    def _candidate(
        self, v: Mapping[str, float], previous_width: float | None
    ) -> tuple[str, float, str]:
        cfg, state = self.config, self.state
        vol_q = _rank(state.vol_history, v["volatility_20"])
        peak = max(state.closes)
        drawdown = state.closes[-1] / peak - 1.0
        if drawdown <= -cfg.crisis_drawdown and vol_q >= cfg.crisis_vol_quantile:
            confidence = min(
                _squash(-drawdown - cfg.crisis_drawdown, 0.05),
                _squash(vol_q - cfg.crisis_vol_quantile + 0.01, 0.02),
            )
            rule = (
                f"drawdown {drawdown:.1%} <= -{cfg.crisis_drawdown:.0%} from the {cfg.peak_bars}-bar "
                f"peak, volatility_20 at quantile {vol_q:.2f} >= {cfg.crisis_vol_quantile}"
            )
            return "crisis", confidence, rule

        pctb, volume_ratio = v["bb_pctb"], v["volume_ratio_20"]
        if previous_width is not None and (pctb > 1.0 or pctb < 0.0):
            width_q = _rank(state.width_history, previous_width)
            if width_q <= cfg.squeeze_quantile and volume_ratio >= cfg.breakout_volume_ratio:
                side = "above" if pctb > 1.0 else "below"
                confidence = min(
                    _squash(abs(pctb - 0.5) - 0.5, 0.2),
                    _squash(volume_ratio - cfg.breakout_volume_ratio + 0.05, 0.5),
                )
                rule = (
                    f"bb_pctb {pctb:.2f}: close {side} the band after a squeeze (previous bb_width "
                    f"at quantile {width_q:.2f} <= {cfg.squeeze_quantile}), volume_ratio_20 "
                    f"{volume_ratio:.2f} >= {cfg.breakout_volume_ratio}"
                )
                return "breakout", confidence, rule

        rsi, rsi_lag = v["rsi_14"], v["rsi_14_lag1"]
        ret_5, ret_20 = v["ret_5"], v["ret_20"]
        if np.sign(ret_5) != np.sign(ret_20):
            if rsi_lag > cfg.rsi_high >= rsi:
                zone = f"rsi_14 {rsi_lag:.1f} -> {rsi:.1f} leaves overbought {cfg.rsi_high:.0f}"
                margin = rsi_lag - cfg.rsi_high
            elif rsi_lag < cfg.rsi_low <= rsi:
                zone = f"rsi_14 {rsi_lag:.1f} -> {rsi:.1f} leaves oversold {cfg.rsi_low:.0f}"
                margin = cfg.rsi_low - rsi_lag
            else:
                zone = ""
                margin = 0.0
            if zone:
                rule = f"{zone}, ret_5 {ret_5:+.2%} against ret_20 {ret_20:+.2%}"
                return "reversal", _squash(margin + 0.5, 5.0), rule

        # the drift's t-statistic over trend_bars (closes the state keeps), on hist_vol_60
        bars = cfg.trend_bars
        closes = state.closes
        if len(closes) <= bars:
            ret = ret_20
            bars = 20
        else:
            ret = closes[-1] / closes[-1 - bars] - 1.0
        z = ret / max(v["hist_vol_60"] * math.sqrt(bars), 1e-12)
        if state.hmm is not None and state.hmm_probabilities is not None:
            return self._hmm_regime(state.hmm, state.hmm_probabilities, bars)
        if vol_q >= cfg.high_vol_quantile:
            rule = f"volatility_20 at quantile {vol_q:.2f} >= {cfg.high_vol_quantile}"
            return "high_vol_range", _squash(vol_q - cfg.high_vol_quantile + 0.01, 0.1), rule
        if vol_q <= cfg.low_vol_quantile:
            rule = f"volatility_20 at quantile {vol_q:.2f} <= {cfg.low_vol_quantile}"
            return "low_vol_range", _squash(cfg.low_vol_quantile - vol_q + 0.01, 0.1), rule
        # between the two: the market trends, the way its drift points; the higher the volatility
        # within the band, the more evidence an up-drift needs (vol_tilt: falling markets are the
        # more volatile ones)
        mid = (cfg.low_vol_quantile + cfg.high_vol_quantile) / 2.0
        half = (cfg.high_vol_quantile - cfg.low_vol_quantile) / 2.0
        score = z - cfg.vol_tilt * (vol_q - mid) / half
        where = f"volatility_20 at quantile {vol_q:.2f} in ({cfg.low_vol_quantile}, {cfg.high_vol_quantile})"
        drift = f"{bars}-bar drift t-stat {z:+.2f}, tilt {cfg.vol_tilt * (vol_q - mid) / half:+.2f}"
        if score >= 0:
            return "trending_bull", _squash(score + 0.05, 1.0), f"{where}, {drift}: up"
        return "trending_bear", _squash(-score, 1.0), f"{where}, {drift}: down"

    def _hmm_regime(
        self, hmm: HmmParams, probabilities: np.ndarray, bars: int
    ) -> tuple[str, float, str]:
        """The most probable state, by its rank in volatility: the calmest is the low-volatility
        range, the most volatile the high-volatility range, and a state between them a trend the
        way its fitted drift points (reported as a t-statistic over ``bars``)."""
        k = int(np.argmax(probabilities))
        p = float(probabilities[k])
        mean, sigma = float(hmm.mean[k]), float(hmm.sigma[k])
        state = (
            f"HMM state {k + 1} of {hmm.states} by volatility (P {p:.2f}; drift {mean:+.5f}, "
            f"volatility {sigma:.4f} a bar)"
        )
        if k == 0:
            return "low_vol_range", p, f"{state}: the calmest"
        if k == hmm.states - 1:
            return "high_vol_range", p, f"{state}: the most volatile"
        fitted = mean / sigma * math.sqrt(bars)
        drift = f"fitted drift t-stat over {bars} bars {fitted:+.2f}"
        if fitted >= 0:
            return "trending_bull", p, f"{state}: between; {drift}: up"
        return "trending_bear", p, f"{state}: between; {drift}: down"


def detect_regimes(
    features: pd.DataFrame, close: Iterable[float], config: RegimeConfig | None = None
) -> pd.DataFrame:
    """The reading of every row of ``features`` (``bar_features_v1`` columns, in time order) with
    its ``close``: columns ``regime``, ``confidence``, ``rule``, ``candidate``. The same per-bar
    update the online path runs."""
    missing = [name for name in INPUTS if name not in features.columns]
    if missing:
        raise ConfigError(f"regime detection needs feature columns {missing}")
    closes = np.asarray(list(close), dtype=np.float64)
    if len(closes) != len(features):
        raise ConfigError(
            f"regime detection got {len(features)} feature rows and {len(closes)} closes"
        )
    detector = RegimeDetector(config)
    columns = {name: features[name].to_numpy(dtype=np.float64) for name in INPUTS}
    readings = []
    for i, time in enumerate(features.index):
        row = {name: columns[name][i] for name in INPUTS}
        readings.append(detector.update(row, closes[i], time))
    return pd.DataFrame(
        {
            "regime": [r.regime for r in readings],
            "confidence": [r.confidence for r in readings],
            "rule": [r.rule for r in readings],
            "candidate": [r.candidate for r in readings],
        },
        index=features.index,
    )
