"""Combine several strategies' targets into one ensemble target.

* ``average``: the mean of the members' targets.
* ``voting``: the sign of the sum of the members' target signs (majority direction; a tie is flat).
* ``weighted``: sum of weight x target, clipped to [-1, 1]. Weights are either given (normalized by the
  sum of their absolute values) or **inverse volatility**: at bar t each member's weight is
  proportional to 1 / std of its own backtest returns over the ``lookback`` bars up to and including t
  (known at t's close, so no lookahead); until ``min_periods`` returns exist, members weigh equally.

The ensemble is an ordinary target series, backtested on the same kernel as its members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError

EnsembleMethod = Literal["weighted", "voting", "average"]


def inverse_volatility_weights(
    returns: np.ndarray, lookback: int = 63, min_periods: int = 20
) -> np.ndarray:
    """Time-varying weights (n_bars x n_members) from each member's returns up to each bar."""
    r = pd.DataFrame(returns)
    vol = r.rolling(lookback, min_periods=min_periods).std(ddof=1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(vol > 0, 1.0 / vol, np.nan)
    n_members = returns.shape[1]
    equal = np.full(n_members, 1.0 / n_members)
    total = np.nansum(inv, axis=1, keepdims=True)
    usable = np.isfinite(inv).all(axis=1) & (total[:, 0] > 0)
    weights = np.where(usable[:, None], np.nan_to_num(inv) / np.where(total > 0, total, 1.0), equal)
    return weights


def combine(
    targets: Mapping[str, np.ndarray],
    method: EnsembleMethod,
    *,
    weights: Mapping[str, float] | None = None,
    member_returns: Mapping[str, np.ndarray] | None = None,
    lookback: int = 63,
) -> tuple[np.ndarray, dict[str, float]]:
    """Ensemble target and the weights used (for inverse volatility: their mean over the run)."""
    if not targets:
        raise ConfigError("an ensemble needs at least one successful member")
    names = list(targets)
    matrix = np.column_stack([np.asarray(targets[n], dtype=np.float64) for n in names])
    if method == "average":
        return matrix.mean(axis=1), dict.fromkeys(names, 1.0 / len(names))
    if method == "voting":
        return np.sign(np.sign(matrix).sum(axis=1)), dict.fromkeys(names, 1.0 / len(names))
    if method != "weighted":
        raise ConfigError(f"unknown ensemble method {method!r}; use weighted, voting or average")
    if weights is not None:
        unknown = set(weights) - set(names)
        if unknown:
            raise ConfigError(f"ensemble weights name unknown or failed members: {sorted(unknown)}")
        w = np.array([float(weights.get(n, 0.0)) for n in names])
        total = np.abs(w).sum()
        if total == 0:
            raise ConfigError("ensemble weights sum to zero")
        w = w / total
        return np.clip(matrix @ w, -1.0, 1.0), dict(zip(names, w.tolist(), strict=True))
    if member_returns is None:
        raise ConfigError("inverse-volatility weights need the members' returns")
    rets = np.column_stack([np.asarray(member_returns[n], dtype=np.float64) for n in names])
    wt = inverse_volatility_weights(rets, lookback=lookback)
    combined = np.clip((matrix * wt).sum(axis=1), -1.0, 1.0)
    return combined, dict(zip(names, wt.mean(axis=0).tolist(), strict=True))
