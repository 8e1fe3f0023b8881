"""``raytrader meta evaluate``: the meta ensemble against its baselines on one dataset (or seeds of
the synthetic generator), on the one kernel, after costs, out of sample.

For each dataset: the members' targets over all bars; their track records start after
``member_bars`` (the members' training or parameter choice must end there: rule members with
parameters fixed in the config have none, and the first ``member_bars`` are the meta's own warm-up
for them); the meta loop for every (preset, predictor) and the baselines run over all bars; the
comparison (:func:`raytrader.meta.evaluate.evaluate_targets`) is on the bars from ``test_start``
on, at each cost multiple. Every (preset, predictor) counts as one trial of the deflated Sharpe
(``trials``: more, when more were tried elsewhere).
Buy-and-hold is a row; the best single member *in hindsight* and the per-window oracle (the best
member of each ``refit_bars`` block, in hindsight) are rows marked not investable, and every
row's ``closed_gap`` says how far it went from the first toward the second; on synthetic data the
true-regime oracle (the best member of each true regime, in hindsight) is one more. With
``without_regimes``, the named predictors also run without the regime inputs.
Each table comes with the candidates' Sharpe per regime read at the bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from raytrader.backtest.engine import strategy_targets
from raytrader.config import StrictConfig
from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.features.engine import compute_features
from raytrader.meta.baselines import BASELINES, baseline_weights, weighted_target
from raytrader.meta.dataset import REGIME_FEATURES, member_returns, predictor_rows
from raytrader.meta.evaluate import evaluate_targets, per_regime
from raytrader.meta.loop import MetaConfig, run_meta
from raytrader.meta.predictors import Kind
from raytrader.meta.regimes import REGIMES, RegimeConfig, detect_regimes
from raytrader.meta.track_record import MemberTraining
from raytrader.meta.train import PredictorTraining
from raytrader.meta.weights import PRESETS
from raytrader.sim.config import SimConfig
from raytrader.strategies.base import make_strategy


class RuleMember(StrictConfig):
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)


DEFAULT_MEMBERS = {
    "ma_cross": RuleMember(strategy="ma_cross", params={"fast": 10, "slow": 50}),
    "rsi": RuleMember(strategy="rsi"),
    "momentum": RuleMember(strategy="momentum"),
    "macd": RuleMember(strategy="macd"),
    "bollinger": RuleMember(strategy="bollinger"),
    "mean_reversion": RuleMember(strategy="mean_reversion"),
    "buy_and_hold": RuleMember(strategy="buy_and_hold"),
}


class StudyConfig(StrictConfig):
    """``raytrader meta evaluate --config``."""

    members: dict[str, RuleMember] = Field(default_factory=lambda: dict(DEFAULT_MEMBERS))
    member_bars: int = Field(500, ge=1)
    test_start: int = Field(1000, ge=1)
    presets: tuple[str, ...] = ("balanced",)
    predictors: tuple[Kind, ...] = ("table",)
    #: these predictors run once more on rows without the regime inputs (``meta[preset,kind,
    #: no regimes]``): what the regime detection adds ("table" reads nothing but the regime)
    without_regimes: tuple[Kind, ...] = ()
    refit_bars: int = Field(21, ge=1)
    horizon: int = Field(5, ge=1)
    cost_multiples: tuple[float, ...] = (1.0, 2.0)
    sim: SimConfig = Field(default_factory=SimConfig)
    regimes: RegimeConfig = Field(default_factory=RegimeConfig)
    reps: int = Field(1000, ge=100)
    seed: int = 0
    #: the configurations tried in all, when more were tried than this study runs (an earlier or
    #: wider search on the same data): the deflated Sharpe's count (at least the ones run here)
    trials: int | None = Field(None, ge=1)
    training: PredictorTraining = Field(default_factory=PredictorTraining)

    def check(self) -> None:
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise ConfigError(f"unknown presets {unknown}; choose from {sorted(PRESETS)}")
        if "table" in self.without_regimes:
            raise ConfigError("without_regimes: the table predictor is nothing but the regime")
        if self.test_start <= self.member_bars:
            raise ConfigError(
                f"test_start ({self.test_start}) must come after member_bars ({self.member_bars})"
            )


def _costly(sim: SimConfig, multiple: float) -> SimConfig:
    return sim.model_copy(
        update={
            "commission": sim.commission * multiple,
            "slippage_bps": sim.slippage_bps * multiple,
        }
    )


def member_inputs(
    bars: Bars, config: StudyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, MemberTraining]]:
    """The features, the regime readings, the members' targets and their training spans."""
    features = compute_features(bars)
    regimes = detect_regimes(features, bars.column("close"), config.regimes)
    targets = pd.DataFrame(
        {
            name: strategy_targets(make_strategy(m.strategy, m.params), bars)
            for name, m in config.members.items()
        }
    )
    until = bars.index[config.member_bars - 1]
    return (
        features,
        regimes,
        targets,
        {name: MemberTraining(name, until) for name in config.members},
    )


def study_rows(bars: Bars, config: StudyConfig) -> pd.DataFrame:
    """The predictor's rows of the study's members on ``bars`` at the configured costs."""
    features, regimes, targets, trainings = member_inputs(bars, config)
    return predictor_rows(bars, features, regimes, targets, trainings, config.horizon, config.sim)


@dataclass(frozen=True)
class StudyResult:
    """Per cost multiple: the comparison table, and the candidates' Sharpe per regime."""

    tables: dict[float, pd.DataFrame]
    regimes: dict[float, pd.DataFrame]


def window_oracle(returns: pd.DataFrame, window: int) -> pd.DataFrame:
    """Not investable: in each block of ``window`` bars, all the weight on the member that earned
    the most over that very block (the per-window oracle, the best a selector could do)."""
    chosen = np.empty(len(returns), dtype=np.int64)
    growth = np.log1p(returns.fillna(0.0).to_numpy())
    for start in range(0, len(returns), window):
        block = slice(start, start + window)
        # a block's targets earn from the next bar on (next-open fills)
        earned = growth[start + 1 : start + window + 1].sum(axis=0)
        chosen[block] = int(np.argmax(earned)) if len(earned) else 0
    weights = np.zeros(returns.shape)
    weights[np.arange(len(returns)), chosen] = 1.0
    return pd.DataFrame(weights, index=returns.index, columns=returns.columns)


def held(weights: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """The weights the combiner applies: a member without a decision at a bar holds none."""
    return weights.where(targets.notna(), 0.0).fillna(0.0)


def single(weights: pd.DataFrame, targets: pd.DataFrame) -> pd.Series:
    """The target of one-member-per-bar weights: that member's target (NaN where it has none)."""
    values = targets.to_numpy(np.float64)
    w = weights.to_numpy(np.float64)
    out = np.full(len(targets), np.nan)
    rows, cols = np.nonzero(w)
    out[rows] = values[rows, cols]
    return pd.Series(out, index=targets.index, name="target")


#: the predictor rows' regime inputs (dropped for the ``no regimes`` variants)
_REGIME_INPUTS = frozenset(
    [f"regime_{name}" for name in REGIMES] + ["regime_confidence", *REGIME_FEATURES]
)


def regime_oracle(
    test_returns: pd.DataFrame, targets: pd.DataFrame, truth: pd.Series
) -> pd.DataFrame:
    """The true-regime oracle (synthetic data, not investable): in each true regime, all the
    weight on the member that earned the most over the test bars of that regime, in hindsight."""
    regime = truth.reindex(targets.index)
    in_test = regime.loc[test_returns.index]
    weights = pd.DataFrame(0.0, index=targets.index, columns=targets.columns)
    for name in in_test.dropna().unique():
        bars = in_test.index[in_test == name]
        best = str(test_returns.loc[bars].sum().idxmax())
        weights.loc[(regime == name).to_numpy(), best] = 1.0
    return weights


def study(
    bars: Bars,
    config: StudyConfig,
    progress: Callable[[str], None] | None = None,
    truth: pd.Series | None = None,
) -> StudyResult:
    """One comparison table per cost multiple (see the module docstring); with ``truth`` (the
    synthetic generator's regime per bar) the true-regime oracle is a row too."""
    config.check()
    if len(bars) <= config.test_start + config.horizon:
        raise ConfigError(
            f"{bars.symbol}: {len(bars)} bars leave no test span after test_start {config.test_start}"
        )
    say = progress or (lambda _: None)
    features, regimes, targets, trainings = member_inputs(bars, config)
    test = bars.index[config.test_start :]
    tables: dict[float, pd.DataFrame] = {}
    by_regime: dict[float, pd.DataFrame] = {}
    for multiple in config.cost_multiples:
        sim = _costly(config.sim, multiple)
        rows = predictor_rows(bars, features, regimes, targets, trainings, config.horizon, sim)
        returns = member_returns(bars, targets, sim)
        candidates: dict[str, pd.Series] = {}
        weights: dict[str, pd.DataFrame] = {}
        tried: list[str] = []
        blind = rows.drop(columns=[c for c in rows.columns if c in _REGIME_INPUTS])
        variants = [(kind, rows, "") for kind in config.predictors]
        variants += [(kind, blind, ",no regimes") for kind in config.without_regimes]
        for preset in config.presets:
            for kind, inputs, suffix in variants:
                name = f"meta[{preset},{kind}{suffix}]"
                say(f"{bars.symbol} costs x{multiple}: {name}")
                meta = MetaConfig(
                    predictor=kind, preset=preset, refit_bars=config.refit_bars,
                    horizon=config.horizon, seed=config.seed,
                )  # fmt: skip
                run = run_meta(inputs, targets, meta, close=bars.frame["close"])
                candidates[name] = run.frame["target"]
                weights[name] = run.weights
                tried.append(name)
        for baseline in BASELINES:
            weights[baseline] = baseline_weights(baseline, returns, refit_bars=config.refit_bars)
            candidates[baseline] = weighted_target(weights[baseline], targets, baseline)
        candidates["buy_and_hold_asset"] = pd.Series(1.0, index=bars.index)
        in_test = returns.loc[test]
        best = str((in_test.mean() / in_test.std(ddof=0).where(lambda s: s > 0)).idxmax())
        hindsight = f"best_in_hindsight({best})"
        weights[hindsight] = pd.DataFrame(
            {m: float(m == best) for m in targets.columns}, index=targets.index
        )
        weights["oracle_per_window"] = window_oracle(returns, config.refit_bars)
        references = [hindsight, "oracle_per_window"]
        if truth is not None:
            weights["oracle_true_regime"] = regime_oracle(returns.loc[test], targets, truth)
            references.append("oracle_true_regime")
        for name in references:
            candidates[name] = single(weights[name], targets)
        test_bars = Bars.from_frame(
            bars.frame.loc[test],
            symbol=bars.symbol,
            timeframe=bars.timeframe,
            calendar=bars.calendar,
        )
        table = evaluate_targets(
            test_bars,
            {name: target.loc[test] for name, target in candidates.items()},
            tried=tuple(tried),
            trials=config.trials,
            config=sim,
            reps=config.reps,
            seed=config.seed,
            weights={name: held(w, targets).loc[test] for name, w in weights.items()},
            references=tuple(references),
        )
        # ASlib's closed gap: how much of the way from the best single member (in hindsight) to
        # the per-window oracle a candidate went (1: the oracle; 0 or below: no better than it)
        sharpe = table["sharpe"].astype(float)
        sbs, vbs = float(sharpe[hindsight]), float(sharpe["oracle_per_window"])
        table["closed_gap"] = (sharpe - sbs) / (vbs - sbs) if vbs > sbs else float("nan")
        tables[multiple] = table
        by_regime[multiple] = per_regime(
            test_bars,
            {name: target.loc[test] for name, target in candidates.items()},
            regimes["regime"].loc[test],
            sim,
        )
    return StudyResult(tables=tables, regimes=by_regime)
