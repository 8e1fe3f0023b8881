"""Seeded synthetic bars: a regime-switching geometric Brownian motion with volume.

Regimes (bull, bear, calm, turbulent) follow a Markov chain; within a regime log returns are Gaussian
with the regime's annual drift and volatility scaled to the bar length. Opens gap slightly from the
previous close, highs/lows extend beyond the body by a half-normal amount proportional to the bar's
volatility, and volume is log-normal and rises with absolute returns. Same seed → same bars, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raytrader.config import StrictConfig
from raytrader.data.bars import Bars, make_frame
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import ConfigError

# the generator's regimes, in the order of _REGIMES (synthetic_regimes returns these names)
REGIME_NAMES = ("bull", "bear", "calm", "turbulent")
# annual drift, annual volatility of each regime
_REGIMES = np.array(
    [
        [0.30, 0.15],  # bull
        [-0.35, 0.30],  # bear
        [0.00, 0.08],  # calm
        [0.00, 0.70],  # turbulent
    ]
)
# expected regime length in bars is 1 / (1 - stay)
_STAY = 0.995


class SyntheticConfig(StrictConfig):
    """Parameters of the synthetic generator (all have embedded defaults)."""

    symbol: str = "SYN"
    n_bars: int = 10_000
    timeframe: str = "1m"
    start: str = "2024-01-01T00:00:00+00:00"
    seed: int = 7
    initial_price: float = 100.0
    base_volume: float = 1_000.0
    vol_scale: float = 1.0


def synthetic_bars(config: SyntheticConfig | None = None, **overrides: object) -> Bars:
    """Generate bars per ``config`` (keyword overrides are validated like the config)."""
    return _generate(_resolve(config, overrides))[0]


def synthetic_regimes(config: SyntheticConfig | None = None, **overrides: object) -> pd.Series:
    """The true regime of every bar :func:`synthetic_bars` generates for the same config: one of
    :data:`REGIME_NAMES`, indexed like the bars. The ground truth for scoring regime detection."""
    cfg = _resolve(config, overrides)
    bars, regime = _generate(cfg)
    names = np.asarray(REGIME_NAMES, dtype=object)[regime]
    return pd.Series(names, index=bars.frame.index, name="regime")


def _resolve(config: SyntheticConfig | None, overrides: dict[str, object]) -> SyntheticConfig:
    cfg = config or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig.parse({**cfg.model_dump(), **overrides})
    return cfg


def _generate(cfg: SyntheticConfig) -> tuple[Bars, np.ndarray]:
    """The bars and the regime index of each bar (into :data:`REGIME_NAMES`)."""
    if cfg.n_bars < 1:
        raise ConfigError(f"synthetic n_bars must be >= 1, got {cfg.n_bars}")
    if cfg.initial_price <= 0:
        raise ConfigError(f"synthetic initial_price must be > 0, got {cfg.initial_price}")
    tf = Timeframe.parse(cfg.timeframe)
    start = pd.Timestamp(cfg.start)
    if start.tzinfo is None:
        raise ConfigError(f"synthetic start {cfg.start!r} must carry a timezone (UTC)")
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_bars
    dt = tf.seconds / (365.0 * 86400.0)

    # regime path: the chain switches with probability 1-STAY to a uniformly drawn other regime
    switch = rng.random(n) > _STAY
    jumps = rng.integers(1, len(_REGIMES), size=n)
    regime = np.cumsum(np.where(switch, jumps, 0)) % len(_REGIMES)

    mu = _REGIMES[regime, 0]
    sigma = _REGIMES[regime, 1] * cfg.vol_scale
    step_sigma = sigma * np.sqrt(dt)
    z = rng.standard_normal(n)
    log_ret = (mu - 0.5 * sigma**2) * dt + step_sigma * z
    close = cfg.initial_price * np.exp(np.cumsum(log_ret))
    prev_close = np.concatenate(([cfg.initial_price], close[:-1]))
    gap = np.exp(0.1 * step_sigma * rng.standard_normal(n))
    open_ = prev_close * gap
    body_hi = np.maximum(open_, close)
    body_lo = np.minimum(open_, close)
    high = body_hi * np.exp(np.abs(rng.standard_normal(n)) * 0.5 * step_sigma)
    low = body_lo * np.exp(-np.abs(rng.standard_normal(n)) * 0.5 * step_sigma)
    volume = np.round(
        cfg.base_volume
        * np.exp(0.4 * rng.standard_normal(n))
        * (1.0 + 20.0 * np.abs(log_ret) / np.maximum(step_sigma, 1e-12) * 0.05)
    )
    index = pd.date_range(start=start.tz_convert("UTC"), periods=n, freq=tf.pandas_freq)
    frame = make_frame(index, open_, high, low, close, volume)
    bars = Bars.from_frame(
        frame,
        symbol=cfg.symbol,
        timeframe=tf,
        calendar=Calendar.CRYPTO,
        source=f"synthetic(seed={cfg.seed})",
    )
    return bars, regime
