"""The ensembles the meta ensemble must beat, over the same members, causally: each bar's weights
use the members' net returns up to that bar (:func:`raytrader.meta.dataset.member_returns`).

``equal``        every member with a decision, the same weight (the ensemble's ``average``).
``inverse_vol``  weights ∝ 1 / the member's trailing ``window``-bar volatility of net returns
                 (the runner's :func:`~raytrader.strategies.ensemble.inverse_volatility_weights`).
``best_single``  every ``refit_bars`` bars, the member with the best trailing ``window``-bar net
                 Sharpe alone (FinRL's ensemble rule: follow the leader).
``fixed_share``  Hedge over the members (``w ∝ w·exp(eta·r)`` with each bar's net returns) mixed
                 with ``alpha/K`` of the uniform each bar so it can follow a new leader
                 (Herbster & Warmuth 1998); ``alpha = 0`` is plain Hedge.
``dma``          dynamic model averaging's forgetting (Raftery, Kárný & Ettler 2010):
                 ``log w ← forgetting · log w + eta·r``, normalized — yesterday's evidence fades
                 by ``forgetting`` (0.99) a bar; ``forgetting = 1`` is plain Hedge.

Each gives per-bar weights (rows sum to 1 over the members, or are all 0 before any data), and
the members' targets are combined with them by the one combiner
(:func:`raytrader.strategies.combine.combine`, ``weighted``: a member without a decision is
masked and the others renormalized).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError
from raytrader.strategies.combine import combine
from raytrader.strategies.ensemble import inverse_volatility_weights

Baseline = Literal["equal", "inverse_vol", "best_single", "fixed_share", "dma"]
BASELINES: tuple[Baseline, ...] = ("equal", "inverse_vol", "best_single", "fixed_share", "dma")


def baseline_weights(
    kind: str,
    returns: pd.DataFrame,
    *,
    window: int = 63,
    refit_bars: int = 21,
    eta: float = 10.0,
    alpha: float = 0.01,
    forgetting: float = 0.99,
) -> pd.DataFrame:
    """The weights of baseline ``kind`` at each bar, from the net ``returns`` up to that bar."""
    r = returns.to_numpy(np.float64)
    n, k = r.shape
    if kind == "equal":
        w = np.full((n, k), 1.0 / k)
    elif kind == "inverse_vol":
        w = inverse_volatility_weights(r, lookback=window, min_periods=max(2, window // 3))
    elif kind == "best_single":
        mean = returns.rolling(window, min_periods=max(2, window // 3)).mean().to_numpy()
        std = returns.rolling(window, min_periods=max(2, window // 3)).std(ddof=0).to_numpy()
        sharpe = np.where(std > 0, mean / np.where(std > 0, std, 1.0), np.nan)
        w = np.zeros((n, k))
        chosen = -1
        for i in range(n):
            if i % refit_bars == 0 and not np.isnan(sharpe[i]).all():
                chosen = int(np.nanargmax(sharpe[i]))
            if chosen >= 0:
                w[i, chosen] = 1.0
    elif kind == "fixed_share":
        if not (eta > 0 and 0 <= alpha < 1):
            raise ConfigError(f"fixed_share needs eta > 0 and 0 <= alpha < 1, got {eta}, {alpha}")
        w = np.empty((n, k))
        current = np.full(k, 1.0 / k)
        for i in range(n):
            gain = np.nan_to_num(r[i])
            logw = np.log(current) + eta * gain
            current = np.exp(logw - logw.max())
            current /= current.sum()
            current = (1.0 - alpha) * current + alpha / k
            w[i] = current
    elif kind == "dma":
        if not (eta > 0 and 0 < forgetting <= 1):
            raise ConfigError(f"dma needs eta > 0 and 0 < forgetting <= 1, got {eta}, {forgetting}")
        w = np.empty((n, k))
        logw = np.zeros(k)
        for i in range(n):
            logw = forgetting * logw + eta * np.nan_to_num(r[i])
            logw -= logw.max()
            current = np.exp(logw)
            w[i] = current / current.sum()
    else:
        raise ConfigError(f"unknown baseline {kind!r}; choose one of {list(BASELINES)}")
    return pd.DataFrame(w, index=returns.index, columns=returns.columns)


def baseline_target(
    kind: str, returns: pd.DataFrame, targets: pd.DataFrame, **options: float
) -> pd.Series:
    """The combined target of baseline ``kind`` (module docstring)."""
    if not returns.index.equals(targets.index) or list(returns.columns) != list(targets.columns):
        raise ConfigError("member returns and targets must share their bars and members")
    window = int(options.pop("window", 63))
    refit_bars = int(options.pop("refit_bars", 21))
    extra = options.keys() - {"eta", "alpha", "forgetting"}
    if extra:
        raise ConfigError(f"unknown baseline options {sorted(extra)}")
    weights = baseline_weights(
        kind, returns, window=window, refit_bars=refit_bars,
        eta=float(options.get("eta", 10.0)), alpha=float(options.get("alpha", 0.01)),
        forgetting=float(options.get("forgetting", 0.99)),
    )  # fmt: skip
    return weighted_target(weights, targets, kind)


def weighted_target(weights: pd.DataFrame, targets: pd.DataFrame, kind: str) -> pd.Series:
    """The members' ``targets`` combined with per-bar ``weights`` (the one combiner)."""
    if not math.isfinite(float(weights.to_numpy().sum())):
        raise ConfigError(f"baseline {kind} produced non-finite weights")
    combined = combine(
        targets.to_numpy(np.float64),
        "weighted",
        weights=weights.to_numpy(),
        names=list(targets.columns),
    )
    return pd.Series(combined.target, index=targets.index, name="target")
