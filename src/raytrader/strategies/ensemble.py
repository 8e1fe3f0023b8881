"""The parallel runner's ensemble: its members' targets combined into one target series, backtested
on the same kernel as the members.

The combination is :mod:`raytrader.strategies.combine`'s (the registered ensemble uses the same):
a member's NaN target is that member missing on that bar, masked, the present members' weights
renormalized; a bar with no member present gets a NaN target (the kernel keeps the previous one).
The runner's members carry no confidences. Weights by method:

* ``weighted``: the given ``weights`` (per member label, >= 0; a successful member they do not name
  weighs 0), else **inverse volatility**, per bar (:func:`inverse_volatility_weights`);
* ``voting``: the given ``weights``, else every member votes with weight 1;
* ``average``: every member weighs 1 (given weights are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError
from raytrader.strategies.combine import METHODS, Method, combine

#: the runner's ensemble methods (:data:`raytrader.strategies.combine.Method`)
EnsembleMethod = Method


def inverse_volatility_weights(
    returns: np.ndarray, lookback: int = 63, min_periods: int = 20
) -> np.ndarray:
    """Time-varying weights (n_bars x n_members) from each member's returns up to each bar.

    At bar t a member's weight is proportional to 1 / the sample standard deviation (ddof 1) of
    its own returns over the ``lookback`` bars up to and including t (NaN returns skipped): known
    at t's close, so no lookahead, and the weights at t computed from ``returns[: t + 1]`` equal
    those computed from the whole series (tested exactly). Each row sums to 1.

    Where any member's volatility is undefined (fewer than ``min_periods`` returns in its window,
    capped at ``lookback``) or **zero** (returns constant over the window, e.g. a member flat for
    the whole window), 1/vol has no finite value for it, and that bar falls back to equal weights
    for every member; the next bar with every volatility positive goes back to inverse volatility.
    """
    r = pd.DataFrame(np.asarray(returns, dtype=np.float64))
    rolling = r.rolling(lookback, min_periods=min(min_periods, lookback))
    vol = rolling.std(ddof=1).to_numpy()
    # a bar is usable where every vol is positive (False where one is NaN or zero)
    usable: np.ndarray = np.asarray((vol > 0.0).all(axis=1, keepdims=True))
    inv = np.where(usable, 1.0 / np.where(usable, vol, 1.0), 1.0)
    weights: np.ndarray = inv / inv.sum(axis=1, keepdims=True)
    return weights


@dataclass(frozen=True)
class MemberEnsemble:
    """The runner's ensemble of its successful members."""

    #: per bar; NaN where no member was present
    target: np.ndarray
    #: per member: the given weights normalized to sum 1, or the inverse-volatility weights'
    #: mean over the run (equal weights for ``average`` and unweighted ``voting``)
    weights: dict[str, float]
    #: per member: on how many bars it was missing (its target NaN)
    members_missing: dict[str, int]


def combine_members(
    targets: Mapping[str, np.ndarray],
    method: EnsembleMethod,
    *,
    weights: Mapping[str, float] | None = None,
    member_returns: Mapping[str, np.ndarray] | None = None,
    lookback: int = 63,
    min_periods: int = 20,
) -> MemberEnsemble:
    """The ensemble of ``targets`` (label → per-bar targets) by ``method`` (module docstring);
    ``member_returns`` (label → per-bar returns) feed the inverse-volatility weights."""
    if not targets:
        raise ConfigError("an ensemble needs at least one successful member")
    if method not in METHODS:
        raise ConfigError(f"unknown ensemble method {method!r}; use {', '.join(METHODS)}")
    names = list(targets)
    matrix = np.column_stack([np.asarray(targets[n], dtype=np.float64) for n in names])
    w: np.ndarray | None = None
    if method != "average" and weights is not None:
        w = _given_weights(weights, names)
    elif method == "weighted":
        if member_returns is None or set(member_returns) != set(names):
            raise ConfigError("inverse-volatility weights need every member's returns")
        rets = np.column_stack([np.asarray(member_returns[n], dtype=np.float64) for n in names])
        w = inverse_volatility_weights(rets, lookback=lookback, min_periods=min_periods)
    combined = combine(matrix, method, weights=w, names=names)
    if w is None:
        shown = np.full(len(names), 1.0 / len(names))
    else:
        shown = w / w.sum() if w.ndim == 1 else w.mean(axis=0)
    missing = combined.missing.sum(axis=0)
    return MemberEnsemble(
        target=combined.target,
        weights=dict(zip(names, shown.tolist(), strict=True)),
        members_missing={n: int(k) for n, k in zip(names, missing, strict=True)},
    )


def _given_weights(weights: Mapping[str, float], names: list[str]) -> np.ndarray:
    unknown = set(weights) - set(names)
    if unknown:
        raise ConfigError(f"ensemble weights name unknown or failed members: {sorted(unknown)}")
    for name, value in weights.items():
        if not (np.isfinite(value) and value >= 0.0):
            raise ConfigError(f"ensemble weight of member {name}: {value} must be finite and >= 0")
    w = np.array([float(weights.get(n, 0.0)) for n in names])
    if w.sum() == 0.0:
        raise ConfigError("ensemble weights of the successful members sum to zero")
    return w
