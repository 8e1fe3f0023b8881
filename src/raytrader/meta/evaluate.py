"""The honest comparison: every candidate ensemble's targets backtested on the same bars with the
same costs by the one kernel, and the statistics that say whether a difference is real.

Per candidate: the kernel's metrics (annual return, volatility, Sharpe, Sortino, max drawdown,
Calmar), turnover (mean ``|Δtarget|`` per bar), the cost drag (the annual return with no commission
and no slippage minus the net one: what trading costs took), the probabilistic Sharpe against 0 and
the deflated Sharpe against the expected best of ``trials`` configurations
(:mod:`raytrader.backtest.deflated`, the trials' Sharpe variance from the candidates marked as
tried); for a candidate given with its member weights, the mean number of active members (weight
at least ``ACTIVE_WEIGHT`` of the bar's whole) and the mean weight concentration (Herfindahl,
``Σ w²``: 1/K for equal weight over K, 1 for a single member), over the bars it held weights; the
membership of the model confidence set at ``MCS_SIZE`` (``arch.bootstrap.MCS``, range statistic,
over the investable candidates: those not given as ``references``; identical return series count
once), and against the ``benchmark`` (equal weight by default):

* Hansen's SPA consistent p-value (``arch.bootstrap.SPA`` on losses = −net return; small: the
  candidate beats the benchmark), stationary bootstrap with the block length of
  ``optimal_block_length``;
* a 95 % stationary-bootstrap interval of the annualized Sharpe difference (paired resamples).

:func:`claim` is the README's rule: a candidate "beats" the benchmark only where the SPA p-value is
below 0.10 and the deflated Sharpe at least 0.90; otherwise the numbers are printed and the claim
is not made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from raytrader.backtest.deflated import (
    deflated_sharpe_ratio,
    periodic_stats,
    probabilistic_sharpe_ratio,
)
from raytrader.backtest.engine import run_backtest
from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.sim.config import SimConfig

SPA_THRESHOLD = 0.10
DSR_THRESHOLD = 0.90
MCS_SIZE = 0.10
#: a member holding less than this share of a bar's weights is not counted active
ACTIVE_WEIGHT = 0.01
METRICS = ("annual_return", "annual_volatility", "sharpe", "sortino", "max_drawdown", "calmar")


def _stationary_indices(n: int, block: float, rng: np.random.Generator) -> np.ndarray:
    """One stationary-bootstrap resample of positions 0..n-1 (Politis & Romano): blocks of
    geometric length with mean ``block``, wrapping around."""
    p = 1.0 / max(block, 1.0)
    out = np.empty(n, dtype=np.int64)
    out[0] = rng.integers(n)
    jumps = rng.random(n) < p
    starts = rng.integers(n, size=n)
    for i in range(1, n):
        out[i] = starts[i] if jumps[i] else (out[i - 1] + 1) % n
    return out


def _sharpe(r: np.ndarray, ppy: float) -> float:
    std = float(r.std())
    return float(r.mean() / std * math.sqrt(ppy)) if std > 0 else 0.0


def evaluate_targets(
    bars: Bars,
    candidates: Mapping[str, pd.Series],
    *,
    tried: tuple[str, ...] = (),
    trials: int | None = None,
    benchmark: str = "equal",
    config: SimConfig | None = None,
    reps: int = 1000,
    seed: int = 0,
    weights: Mapping[str, pd.DataFrame] | None = None,
    references: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One row per candidate (its targets indexed like ``bars``), the module docstring's columns.
    ``tried``: the candidates that are configurations of the method under test (their Sharpe
    variance and count, or ``trials`` when more were tried, deflate the Sharpe). ``weights``: per
    candidate, its members' weights by bar (indexed like ``bars``; a member without a decision at
    a bar given 0). ``references``: the candidates that are not investable (oracles), left out
    of the confidence set."""
    if benchmark not in candidates:
        raise ConfigError(
            f"the benchmark {benchmark!r} is not among the candidates {sorted(candidates)}"
        )
    unknown = sorted((set(weights or {}) | set(references)) - set(candidates))
    if unknown:
        raise ConfigError(f"weights or references name no candidate: {unknown}")
    config = config or SimConfig()
    gross = config.model_copy(update={"commission": 0.0, "slippage_bps": 0.0})
    ppy = bars.periods_per_year
    returns: dict[str, np.ndarray] = {}
    rows: dict[str, dict[str, float]] = {}
    for name, target in candidates.items():
        if not target.index.equals(bars.index):
            raise ConfigError(
                f"candidate {name!r}: targets must be indexed like the {len(bars)} bars"
            )
        result = run_backtest(bars, target, config, name=name)
        r = result.returns.to_numpy()
        returns[name] = r
        held = target.ffill().fillna(0.0).to_numpy()
        stats = periodic_stats(r)
        frictionless = run_backtest(bars, target, gross, name=name)
        rows[name] = {
            **{k: float(result.metrics[k]) for k in METRICS},
            "turnover": float(np.abs(np.diff(held, prepend=0.0)).mean()),
            "cost_drag": float(frictionless.metrics["annual_return"])
            - float(result.metrics["annual_return"]),
            **_weight_columns(name, (weights or {}).get(name), bars.index),
            "psr": probabilistic_sharpe_ratio(
                stats["sharpe"], 0.0, len(r), stats["skewness"], stats["kurtosis"]
            ),
        }
    tried_sharpes = [periodic_stats(returns[name])["sharpe"] for name in tried]
    n_trials = max(trials or 0, len(tried), 1)
    variance = float(np.var(tried_sharpes, ddof=1)) if len(tried_sharpes) > 1 else 0.0
    base = returns[benchmark]
    rng = np.random.default_rng(seed)
    block = _block_length(base)
    resamples = [_stationary_indices(len(base), block, rng) for _ in range(reps)]
    for name, r in returns.items():
        stats = periodic_stats(r)
        rows[name]["dsr"] = deflated_sharpe_ratio(
            stats["sharpe"], variance, n_trials, len(r), stats["skewness"], stats["kurtosis"]
        )
        if name == benchmark:
            rows[name].update({"spa_p": math.nan, "sharpe_diff_low": 0.0, "sharpe_diff_high": 0.0})
            continue
        rows[name]["spa_p"] = _spa_p(base, r, reps, seed, max(1, round(block)))
        diffs = np.array([_sharpe(r[i], ppy) - _sharpe(base[i], ppy) for i in resamples])
        rows[name]["sharpe_diff_low"], rows[name]["sharpe_diff_high"] = (
            float(np.quantile(diffs, 0.025)),
            float(np.quantile(diffs, 0.975)),
        )
    investable = [name for name in returns if name not in references]
    members = confidence_set(
        {name: returns[name] for name in investable}, reps, seed, max(1, round(block))
    )
    for name in returns:
        rows[name]["investable"] = name not in references
        rows[name]["in_mcs"] = (name in members) if name not in references else math.nan
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs.update({"trials": n_trials, "benchmark": benchmark, "block_length": block})
    return table


def _weight_columns(
    name: str, weights: pd.DataFrame | None, index: pd.DatetimeIndex
) -> dict[str, float]:
    """The mean active members and weight concentration over the bars that hold weights."""
    if weights is None:
        return {"active_members": math.nan, "weight_concentration": math.nan}
    if not weights.index.equals(index):
        raise ConfigError(f"candidate {name!r}: weights must be indexed like the {len(index)} bars")
    w = weights.to_numpy(np.float64)
    if np.isnan(w).any() or (w < 0).any():
        raise ConfigError(f"candidate {name!r}: weights must be finite and non-negative")
    total = w.sum(axis=1)
    held = total > 0
    if not held.any():
        return {"active_members": 0.0, "weight_concentration": math.nan}
    share = w[held] / total[held, None]
    return {
        "active_members": float((share >= ACTIVE_WEIGHT).sum(axis=1).mean()),
        "weight_concentration": float((share**2).sum(axis=1).mean()),
    }


def confidence_set(returns: Mapping[str, np.ndarray], reps: int, seed: int, block: int) -> set[str]:
    """The candidates in Hansen, Lunde & Nason's model confidence set at ``MCS_SIZE`` (losses =
    −net return). Candidates with identical returns enter as one (the test's statistic is
    undefined for a pair that never differs) and share its membership."""
    from arch.bootstrap import MCS

    distinct: dict[bytes, str] = {}
    alias: dict[str, str] = {}
    for name, r in returns.items():
        alias[name] = distinct.setdefault(np.ascontiguousarray(r).tobytes(), name)
    kept = list(distinct.values())
    if len(kept) < 2:
        return set(returns)
    losses = pd.DataFrame({name: -returns[name] for name in kept})
    mcs = MCS(losses, size=MCS_SIZE, reps=reps, block_size=block, method="R", seed=seed)
    mcs.compute()
    included = {str(n) for n in mcs.included}
    return {name for name, kept_as in alias.items() if kept_as in included}


def _block_length(r: np.ndarray) -> float:
    from arch.bootstrap import optimal_block_length

    return float(max(1.0, optimal_block_length(r)["stationary"].iloc[0]))


def _spa_p(benchmark: np.ndarray, candidate: np.ndarray, reps: int, seed: int, block: int) -> float:
    """SPA's consistent p-value; with no variation in the difference (a copy of the benchmark)
    SPA's studentized statistic is undefined and arch returns 0, so the answer is given here: 1
    unless the candidate is ahead on every bar it differs."""
    from arch.bootstrap import SPA

    difference = candidate - benchmark
    if float(difference.std()) == 0.0:
        return 0.0 if float(difference.mean()) > 0 else 1.0

    spa = SPA(
        -benchmark,
        -candidate.reshape(-1, 1),
        reps=reps,
        seed=seed,
        block_size=block,
    )
    spa.compute()
    return float(spa.pvalues["consistent"])


def per_regime(
    bars: Bars,
    candidates: Mapping[str, pd.Series],
    regimes: pd.Series,
    config: SimConfig | None = None,
) -> pd.DataFrame:
    """Per regime read at the bar (causal labels): its share of the bars and each candidate's
    annualized Sharpe over those bars' net returns (each candidate backtested once over all of
    ``bars``, its returns then split by the regime of the bar they were earned on)."""
    if not regimes.index.equals(bars.index):
        raise ConfigError(f"regimes must be indexed like the {len(bars)} bars")
    labels = regimes.fillna("none").astype(str).to_numpy()
    returns = {
        name: run_backtest(bars, target, config, name=name).returns.to_numpy()
        for name, target in candidates.items()
    }
    rows = {}
    for regime in sorted(set(labels)):
        mask = labels == regime
        row = {"share": float(mask.mean())}
        row.update({name: _sharpe(r[mask], bars.periods_per_year) for name, r in returns.items()})
        rows[regime] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def claim(table: pd.DataFrame, name: str) -> str:
    """What the README may say of candidate ``name`` against the table's benchmark."""
    row = table.loc[name]
    benchmark = table.attrs.get("benchmark", "the benchmark")
    trials = table.attrs.get("trials")
    numbers = f"SPA p {row['spa_p']:.3f}, deflated Sharpe {row['dsr']:.3f} ({trials} trials)"
    if row["spa_p"] < SPA_THRESHOLD and row["dsr"] >= DSR_THRESHOLD:
        return f"{name} beats {benchmark}: {numbers}"
    return f"{name} does not beat {benchmark}: {numbers}"


def _row_name(name: str) -> str:
    """A candidate's name across datasets (the hindsight member differs from one to the next)."""
    return name.split("(", 1)[0] if name.startswith("best_in_hindsight") else name


def pool(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per candidate over the datasets' tables (one cost multiple): the mean and standard
    deviation of the net Sharpe, the mean max drawdown and cost drag, the share of the datasets
    whose model confidence set holds it (NaN for a reference), and each candidate's paired
    difference in Sharpe to equal weight and to the causal best single member with its
    t-statistic (mean / (std / √n)) over the datasets."""

    def across(column: str) -> pd.DataFrame:
        return pd.DataFrame(
            {spec: t[column].rename(index=_row_name) for spec, t in tables.items()}
        ).astype(float)

    sharpe = across("sharpe").dropna(how="any")  # candidates present on every dataset
    n = sharpe.shape[1]
    out = pd.DataFrame(
        {
            "datasets": n,
            "sharpe_mean": sharpe.mean(axis=1),
            "sharpe_std": sharpe.std(axis=1, ddof=1) if n > 1 else math.nan,
            "max_drawdown_mean": across("max_drawdown").reindex(sharpe.index).mean(axis=1),
            "cost_drag_mean": across("cost_drag").reindex(sharpe.index).mean(axis=1),
            "mcs_share": across("in_mcs").reindex(sharpe.index).mean(axis=1, skipna=False),
        }
    )
    for base in ("equal", "best_single"):
        if base not in sharpe.index:
            continue
        diff = sharpe.sub(sharpe.loc[base], axis=1)
        spread = diff.std(axis=1, ddof=1) if n > 1 else pd.Series(math.nan, index=diff.index)
        out[f"vs_{base}"] = diff.mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"t_vs_{base}"] = diff.mean(axis=1) / (spread / math.sqrt(n))
        out.loc[base, [f"vs_{base}", f"t_vs_{base}"]] = math.nan
    return out
