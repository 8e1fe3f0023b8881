"""The probabilistic and the deflated Sharpe ratio, per bar: what a search's selected config and
the meta ensemble's evaluation report against the number of configurations tried.

Bailey, D. H. and López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for Selection
Bias, Backtest Overfitting and Non-Normality", *Journal of Portfolio Management* 40(5), 94-107,
eqs. (1)-(2)::

    SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))
    DSR = Z( (SR - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) )

``Z`` the standard normal CDF, ``g`` the Euler-Mascheroni constant, ``N`` the number of trials,
``V`` the variance of the trials' Sharpe estimates, ``SR`` the selected trial's Sharpe, ``T`` its
number of returns, ``g3``/``g4`` their skewness and (non-excess) kurtosis. Every Sharpe here is
**per bar** (the paper's non-annualized estimate): annualized Sharpes would need ``T`` in years
and break the ``sqrt(T - 1)`` term. DSR is the probability that the selected config's true Sharpe
exceeds ``SR0``, the Sharpe the best of ``N`` skill-less trials is expected to show.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329


def periodic_stats(returns: np.ndarray) -> dict[str, float]:
    """Per-bar ``sharpe`` (mean / std, ddof=1), ``skewness`` and ``kurtosis`` (biased moment
    estimators m3 / m2^1.5 and m4 / m2^2; 3 for a normal) and ``count`` of ``returns``; the
    statistics are NaN for fewer than 2 returns or constant returns."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    out = {"sharpe": math.nan, "skewness": math.nan, "kurtosis": math.nan, "count": float(n)}
    if n < 2:
        return out
    mean = float(r.mean())
    dev = r - mean
    m2 = float(np.mean(dev**2))
    if m2 <= 0.0:
        return out
    out["sharpe"] = mean / float(np.std(r, ddof=1))
    out["skewness"] = float(np.mean(dev**3)) / m2**1.5
    out["kurtosis"] = float(np.mean(dev**4)) / m2**2
    return out


def expected_max_sharpe(variance: float, n_trials: int) -> float:
    """``SR0``: the expected maximum of ``n_trials`` independent Sharpe estimates whose true
    Sharpe is 0 and whose variance across trials is ``variance`` (Bailey & López de Prado 2014,
    eq. (2)); 0 for a single trial (nothing was selected) or no dispersion."""
    if n_trials < 2 or not variance > 0.0:
        return 0.0
    z = NormalDist().inv_cdf
    n = float(n_trials)
    return math.sqrt(variance) * (
        (1.0 - EULER_GAMMA) * z(1.0 - 1.0 / n) + EULER_GAMMA * z(1.0 - 1.0 / (n * math.e))
    )


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skewness: float, kurtosis: float
) -> float:
    """PSR: the probability that the true per-bar Sharpe exceeds ``benchmark``, given the estimate
    ``sharpe`` from ``n_obs`` returns with that ``skewness`` and (non-excess) ``kurtosis``
    (Bailey & López de Prado 2014, eq. (1)); NaN when undefined."""
    values = (sharpe, benchmark, skewness, kurtosis)
    if n_obs < 2 or not all(math.isfinite(v) for v in values):
        return math.nan
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if spread <= 0.0:
        return math.nan
    return NormalDist().cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(spread))


def deflated_sharpe_ratio(
    sharpe: float,
    trial_variance: float,
    n_trials: int,
    n_obs: int,
    skewness: float,
    kurtosis: float,
) -> float:
    """DSR = PSR against ``SR0 = expected_max_sharpe(trial_variance, n_trials)``; every Sharpe
    per bar, not annualized (module docstring)."""
    benchmark = expected_max_sharpe(trial_variance, n_trials)
    return probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skewness, kurtosis)
