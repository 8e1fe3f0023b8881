"""How a hyperparameter search scores: what one trial computes per target, the no-trades rule, the
one holdout evaluation of the selected config, and the Deflated Sharpe Ratio.

Windows are :func:`raytrader.training.search_config.fold_windows`; every window is backtested on
its own bars, starting flat, by the kernel with the search's ``sim`` costs.

``rule``
    the strategy's targets over the whole series (indicators warm from each window's first bar);
    each window backtested on its own, starting flat.
``supervised``
    expanding walk-forward: for window ``k`` the classifier is fitted on every sample before the
    window whose label ends before the window's first sample (and ``validation.purge`` samples
    earlier), then its targets over the window are backtested. Holdout bars are never trained on.
``rl``
    the agent trains on the bars before the first window (``train_fraction``); after every RLlib
    iteration its greedy policy plays each window as one episode (the training split's normalizer,
    no scenarios, fixed costs) and the targets are backtested. ASHA's unit is the iteration.

Window score
    the window's annualized Sharpe (the pinned ``sharpe`` of :mod:`raytrader.backtest.metrics`). A
    window that traded but whose equity never moved (undefined Sharpe) scores 0.

No trades
    A window in which the config never holds a position (``num_trades == 0``) has **no score**
    (NaN): it is *excluded*, not scored 0 — a 0 would beat every losing config by doing nothing.
    A trial's objective is the mean Sharpe over the windows it traded in. A trial that traded in
    no window has no objective: it is counted as ``no_trades`` and can never be selected (if no
    trial traded at all, the search fails saying so). While a trial has not traded yet it reports
    :data:`NO_TRADES_SCORE` to the scheduler, so ASHA stops such trials first.

Trial report (to Tune, per window, or per RLlib iteration for ``rl``)
    ``sharpe`` (the objective so far, or the floor), ``windows``, ``traded_windows``, and the
    per-bar statistics of the concatenated returns of the traded windows (``bar_sharpe`` = mean /
    std with ddof=1, *not* annualized; ``bar_skewness`` and ``bar_kurtosis``, the biased moment
    estimators, kurtosis 3 for a normal; ``bar_count``) that the Deflated Sharpe Ratio needs.

Holdout (:func:`holdout_evaluation`), run once, for the selected config only, after the search
    ``rule``: the targets over the held-out tail, backtested on its bars alone. ``supervised``: the
    classifier fitted on every sample before the tail (purged as for a window: the whole search
    range) and its targets over the tail. ``rl``: the selected trial's final agent (its last Tune
    checkpoint; trained on the training head only, as during the search) plays the tail as one
    episode. Each next to buy-and-hold on exactly the same bars with the same ``sim``.

Deflated Sharpe Ratio
    :mod:`raytrader.backtest.deflated` (the formulas, per bar), of the selected config against
    every trial.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raytrader.backtest.deflated import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    periodic_stats,
    probabilistic_sharpe_ratio,
)
from raytrader.errors import ConfigError
from raytrader.training.search_config import (
    SearchConfig,
    fold_windows,
    holdout_window,
    with_params,
)

if TYPE_CHECKING:
    from raytrader.data.bars import Bars
    from raytrader.sim.config import SimConfig

INVALID_SCORE = -10.0
"""What a trial whose sampled parameters are invalid (e.g. ``fast >= slow``) reports."""

NO_TRADES_SCORE = -10.0
"""What a trial reports to the scheduler while it has traded in no window (never a real score)."""


@dataclass(frozen=True, eq=False)
class WindowScore:
    """One backtested window: its annualized Sharpe (NaN when it did not trade), whether it
    traded, the per-bar simple returns of its equity and all its kernel metrics."""

    sharpe: float
    traded: bool
    returns: np.ndarray
    metrics: dict[str, float]


def window_score(bars: Bars, lo: int, hi: int, targets: np.ndarray, sim: SimConfig) -> WindowScore:
    """``targets`` (one per bar of ``[lo, hi)``) backtested on those bars alone, starting flat."""
    from raytrader.backtest.engine import run_targets
    from raytrader.backtest.metrics import equity_returns

    mask = np.zeros(len(bars), dtype=bool)
    mask[lo:hi] = True
    out, raw = run_targets(bars.head_mask(mask), np.asarray(targets, dtype=np.float64), sim)
    metrics = {k: float(v[0]) for k, v in raw.items()}
    traded = metrics["num_trades"] > 0
    sharpe = metrics["sharpe"]
    if not traded:
        sharpe = math.nan
    elif not math.isfinite(sharpe):
        sharpe = 0.0  # traded, but the equity never moved: no risk, no return
    returns = equity_returns(out.equity, sim.initial_cash)[:, 0]
    return WindowScore(sharpe=sharpe, traded=traded, returns=returns, metrics=metrics)


def objective(scores: Sequence[WindowScore]) -> float:
    """A trial's objective: the mean Sharpe over the windows it traded in (NaN if none)."""
    traded = [s.sharpe for s in scores if s.traded]
    return float(np.mean(traded)) if traded else math.nan


def trial_report(scores: Sequence[WindowScore]) -> dict[str, float | int]:
    """What a trial reports after scoring ``scores`` (module docstring: *Trial report*)."""
    traded = [s for s in scores if s.traded]
    value = objective(scores)
    report: dict[str, float | int] = {
        "sharpe": value if math.isfinite(value) else NO_TRADES_SCORE,
        "windows": len(scores),
        "traded_windows": len(traded),
    }
    if traded:
        stats = periodic_stats(np.concatenate([s.returns for s in traded]))
        report.update({f"bar_{k}": v for k, v in stats.items() if math.isfinite(v)})
    return report


# --- the targets -----------------------------------------------------------------------------


def rule_scores(params: Mapping[str, Any], config: SearchConfig) -> Iterator[WindowScore]:
    from raytrader.data.sources import load_bars
    from raytrader.strategies.base import make_strategy

    strategy = make_strategy(config.strategy, config.target_config(params))
    bars = load_bars(config.dataset)
    values = strategy.target_positions(bars.frame).to_numpy(dtype=np.float64)
    for lo, hi in fold_windows(len(bars), config):
        yield window_score(bars, lo, hi, values[lo:hi], config.sim)


@dataclass(frozen=True, eq=False)
class _Supervised:
    """A supervised target's bars, features and samples, loaded once per trial."""

    cfg: Any
    bars: Bars
    features: Any
    data: Any

    @classmethod
    def load(cls, params: Mapping[str, Any], config: SearchConfig) -> _Supervised:
        from raytrader.data.sources import load_bars
        from raytrader.features.matrix import training_features
        from raytrader.models.supervised import build_dataset

        cfg = config.target_config(params)
        bars = load_bars(cfg.dataset)
        features = training_features(bars, cfg.feature_source)
        return cls(cfg, bars, features, build_dataset(bars, cfg, features))

    def targets(self, lo: int, hi: int, what: str, index: int) -> np.ndarray:
        """Targets over bars ``[lo, hi)`` of a model fitted on every sample before them whose
        label ends before the first sample in them (and ``validation.purge`` samples earlier)."""
        from raytrader.models.supervised import Fold, check_folds, fit_model

        data, cfg = self.data, self.cfg
        purge = cfg.validation.purge
        test = np.flatnonzero((data.bar_pos >= lo) & (data.bar_pos < hi))
        if not len(test):
            raise ConfigError(f"{what} (bars {lo}..{hi - 1}) has no labelled sample")
        start = int(test[0])
        before = np.arange(start)
        train = before[(data.ends[:start] < start) & (before < start - purge)]
        if len(train) < cfg.validation.min_train:
            raise ConfigError(
                f"{what} keeps {len(train)} training samples, fewer than "
                f"min_train={cfg.validation.min_train}; raise train_fraction or give more bars"
            )
        check_folds([Fold(index=index, train=train, test=test)], data.ends, purge=purge)
        model = fit_model(cfg, data, train, self.bars.symbol)
        targets: np.ndarray = model.predict_targets(self.features.iloc[lo:hi])
        return targets


def supervised_scores(params: Mapping[str, Any], config: SearchConfig) -> Iterator[WindowScore]:
    sup = _Supervised.load(params, config)
    for k, (lo, hi) in enumerate(fold_windows(len(sup.bars), config)):
        targets = sup.targets(lo, hi, f"validation window {k}", k)
        yield window_score(sup.bars, lo, hi, targets, config.sim)


def window_scores(params: Mapping[str, Any], config: SearchConfig) -> Iterator[WindowScore]:
    """The score of each validation window, window by window (a rule or supervised trial's work;
    usable without Tune)."""
    if config.target == "rule":
        return rule_scores(params, config)
    if config.target == "supervised":
        return supervised_scores(params, config)
    raise ConfigError("an rl target is scored per iteration by rl_trainable")


def window_trainable(params: dict[str, Any], spec: dict[str, Any]) -> None:
    """Tune function trainable for ``rule`` and ``supervised``: one report per window."""
    from ray import tune

    config = SearchConfig.model_validate(spec)
    scores: list[WindowScore] = []
    try:
        for i, s in enumerate(window_scores(params, config)):
            scores.append(s)
            last: dict[str, float | int] = {"fold": i + 1, "fold_traded": int(s.traded)}
            if s.traded:
                last["fold_sharpe"] = s.sharpe
            tune.report({**trial_report(scores), **last})
    except ConfigError as exc:  # e.g. fast >= slow: an invalid corner of the space scores low
        if scores:
            raise
        tune.report({"sharpe": INVALID_SCORE, "fold": config.folds, "invalid": str(exc)[:200]})


def _rl_market(config: SearchConfig, cfg: Any) -> tuple[Any, Any, list[tuple[int, int]]]:
    """(the whole market, the training split's normalizer, the validation windows) of ``rl``."""
    from raytrader.envs import TradingEnv
    from raytrader.training.rl import full_market

    market = full_market(cfg)
    train, _ = market.split(cfg.train_fraction)
    normalizer = TradingEnv(train, cfg.env).normalizer
    return market, normalizer, fold_windows(len(market.bars), config, start=train.hi)


def _rl_score(
    cfg: Any, policy: Any, market: Any, normalizer: Any, lo: int, hi: int, sim: SimConfig
) -> WindowScore:
    from raytrader.training.rl import policy_targets

    bars, targets = policy_targets(cfg.env, policy, market.rows(lo, hi), normalizer, cfg.seed)
    return window_score(bars, 0, len(bars), targets, sim)


def rl_trainable(params: dict[str, Any], spec: dict[str, Any]) -> None:
    """Tune function trainable for ``rl``: one report per RLlib iteration scoring every window;
    a Tune checkpoint every ``checkpoint_every`` iterations and at the last one, from which a
    restored search continues the trial (and the holdout evaluation takes the final agent)."""
    from ray import tune

    from raytrader.models.rl_policy import module_policy
    from raytrader.training.rl import build_algo, train_step

    config = SearchConfig.model_validate(spec)
    cfg = config.target_config(params)
    market, normalizer, windows = _rl_market(config, cfg)
    algo = build_algo(cfg)
    checkpoint = tune.get_checkpoint()
    restored_from = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as saved:
            algo.restore_from_path(str((Path(saved) / "algo").resolve()))
        restored_from = int(algo.iteration)
    try:
        while algo.iteration < cfg.iterations:
            row = train_step(algo)
            policy = module_policy(algo.get_module())
            scores = [
                _rl_score(cfg, policy, market, normalizer, lo, hi, config.sim) for lo, hi in windows
            ]
            metrics = {
                **trial_report(scores),
                "iteration": int(algo.iteration),
                "episode_return_mean": row["episode_return_mean"],
                "restored_from": restored_from,
                **{f"fold_{i + 1}_sharpe": s.sharpe for i, s in enumerate(scores) if s.traded},
            }
            if algo.iteration % cfg.checkpoint_every and algo.iteration < cfg.iterations:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                algo.save_to_path(str(Path(tmp, "algo").resolve()))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
    finally:
        algo.stop()


# --- after the search ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SearchRange:
    """Where a search's bars were cut: the validation windows and the held-out tail."""

    index: Any  # the bars' DatetimeIndex
    windows: list[tuple[int, int]]
    holdout: tuple[int, int]
    periods_per_year: float

    def describe(self) -> dict[str, Any]:
        """JSON-ready bar positions (inclusive ends) and UTC timestamps: ``validation_windows``,
        ``selection`` (the validation windows: the only bars trials were scored on) and
        ``searched_bars`` (every bar the search read: warm-up, training head, windows)."""
        lo, hi = self.windows[0][0], self.windows[-1][1]
        return {
            "validation_windows": [[a, b - 1] for a, b in self.windows],
            "selection": self._span(lo, hi),
            "searched_bars": self._span(0, hi),
        }

    def _span(self, lo: int, hi: int) -> dict[str, Any]:
        return {
            "start_bar": lo,
            "end_bar": hi - 1,
            "start": self.index[lo].isoformat(),
            "end": self.index[hi - 1].isoformat(),
        }


def search_range(config: SearchConfig, params: Mapping[str, Any]) -> SearchRange:
    """The windows and holdout the search used (``params``: any valid point, e.g. the best)."""
    if config.target == "rl":
        market, _, windows = _rl_market(config, config.target_config(params))
        bars = market.bars
    else:
        from raytrader.data.sources import load_bars

        data = config.dataset
        bars = load_bars(data)
        windows = fold_windows(len(bars), config)
    return SearchRange(
        bars.index, windows, holdout_window(len(bars), config), bars.periods_per_year
    )


def holdout_evaluation(
    config: SearchConfig, params: Mapping[str, Any], checkpoint: str | Path | None = None
) -> dict[str, Any]:
    """Score ``params`` on the held-out tail, next to buy-and-hold on the same bars (module
    docstring: *Holdout*). ``checkpoint`` (``rl`` only): the selected trial's final Tune
    checkpoint. Returns the bars scored and both sides' kernel metrics."""
    if config.holdout_fraction == 0.0:
        return {"skipped": "holdout_fraction is 0: there is no held-out tail"}
    if config.target == "rule":
        from raytrader.data.sources import load_bars
        from raytrader.strategies.base import make_strategy

        bars = load_bars(config.dataset)
        lo, hi = holdout_window(len(bars), config)
        strategy = make_strategy(config.strategy, config.target_config(params))
        values = strategy.target_positions(bars.frame).to_numpy(dtype=np.float64)
        scored, targets = bars.head_mask(_mask(len(bars), lo, hi)), values[lo:hi]
    elif config.target == "supervised":
        sup = _Supervised.load(params, config)
        bars = sup.bars
        lo, hi = holdout_window(len(bars), config)
        targets = sup.targets(lo, hi, "the holdout", config.folds)
        scored = bars.head_mask(_mask(len(bars), lo, hi))
    else:
        if checkpoint is None:
            return {"skipped": "the selected rl trial left no checkpoint to evaluate"}
        from raytrader.models.rl_policy import greedy_policy
        from raytrader.training.rl import policy_targets

        cfg = config.target_config(params)
        market, normalizer, _ = _rl_market(config, cfg)
        bars = market.bars
        lo, hi = holdout_window(len(bars), config)
        scored, targets = policy_targets(
            cfg.env, greedy_policy(checkpoint), market.rows(lo, hi), normalizer, cfg.seed
        )
        lo = int(bars.index.get_loc(scored.index[0]))
    best = window_score(scored, 0, len(scored), targets, config.sim)
    hold = window_score(scored, 0, len(scored), np.ones(len(scored)), config.sim)
    return {
        "start_bar": lo,
        "end_bar": lo + len(scored) - 1,
        "start": scored.index[0].isoformat(),
        "end": scored.index[-1].isoformat(),
        "no_trades": not best.traded,
        "best": best.metrics,
        "buy_and_hold": hold.metrics,
    }


def _mask(n: int, lo: int, hi: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[lo:hi] = True
    return mask


__all__ = [
    "EULER_GAMMA",
    "INVALID_SCORE",
    "NO_TRADES_SCORE",
    "SearchRange",
    "WindowScore",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "holdout_evaluation",
    "objective",
    "periodic_stats",
    "probabilistic_sharpe_ratio",
    "rl_trainable",
    "rule_scores",
    "search_range",
    "supervised_scores",
    "trial_report",
    "window_score",
    "window_scores",
    "window_trainable",
    "with_params",
]
