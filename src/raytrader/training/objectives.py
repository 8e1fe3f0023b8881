"""What one hyperparameter-search trial computes, per target: the validation Sharpe net of costs of
each walk-forward window (:func:`raytrader.training.tune.fold_windows`).

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

Every window is scored by the kernel with the search's ``sim`` costs and the pinned Sharpe of
:mod:`raytrader.backtest.metrics`; a window where nothing trades scores 0.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raytrader.errors import ConfigError

if TYPE_CHECKING:
    from raytrader.data.bars import Bars
    from raytrader.sim.config import SimConfig
    from raytrader.training.tune import SearchConfig

INVALID_SCORE = -10.0
"""What a trial whose sampled parameters are invalid (e.g. ``fast >= slow``) reports."""


def with_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each sampled value set at its dotted path (``params.n_estimators`` sets
    ``base["params"]["n_estimators"]``)."""
    out = copy.deepcopy(dict(base))
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"search parameter {path!r}: {key!r} is not a section")
            node = child
        node[leaf] = value.item() if isinstance(value, np.generic) else value
    return out


def window_sharpe(bars: Bars, lo: int, hi: int, targets: np.ndarray, sim: SimConfig) -> float:
    """Sharpe of ``targets`` (one per bar of ``[lo, hi)``) backtested on those bars alone."""
    from raytrader.backtest.engine import run_targets

    mask = np.zeros(len(bars), dtype=bool)
    mask[lo:hi] = True
    _, metrics = run_targets(bars.head_mask(mask), np.asarray(targets, dtype=np.float64), sim)
    sharpe = float(metrics["sharpe"][0])
    return sharpe if np.isfinite(sharpe) else 0.0


def rule_scores(params: Mapping[str, Any], config: SearchConfig) -> Iterator[float]:
    from raytrader.data.sources import load_bars
    from raytrader.strategies.base import make_strategy
    from raytrader.training.tune import fold_windows

    strategy = make_strategy(config.strategy, config.target_config(params))
    bars = load_bars(config.data or "goog")
    values = strategy.target_positions(bars.frame).to_numpy(dtype=np.float64)
    for lo, hi in fold_windows(len(bars), config):
        yield window_sharpe(bars, lo, hi, values[lo:hi], config.sim)


def supervised_scores(params: Mapping[str, Any], config: SearchConfig) -> Iterator[float]:
    from raytrader.data.sources import load_bars
    from raytrader.models.supervised import Fold, build_dataset, check_folds, fit_model
    from raytrader.training.data import training_features
    from raytrader.training.tune import fold_windows

    cfg = config.target_config(params)
    bars = load_bars(cfg.dataset)
    features = training_features(bars, cfg.feature_source)
    data = build_dataset(bars, cfg, features)
    purge = cfg.validation.purge
    for k, (lo, hi) in enumerate(fold_windows(len(bars), config)):
        test = np.flatnonzero((data.bar_pos >= lo) & (data.bar_pos < hi))
        if not len(test):
            raise ConfigError(f"validation window {k} (bars {lo}..{hi - 1}) has no labelled sample")
        start = int(test[0])
        before = np.arange(start)
        train = before[(data.ends[:start] < start) & (before < start - purge)]
        if len(train) < cfg.validation.min_train:
            raise ConfigError(
                f"validation window {k} keeps {len(train)} training samples, fewer than "
                f"min_train={cfg.validation.min_train}; raise train_fraction or give more bars"
            )
        check_folds([Fold(index=k, train=train, test=test)], data.ends, purge=purge)
        model = fit_model(cfg, data, train, bars.symbol)
        yield window_sharpe(bars, lo, hi, model.predict_targets(features.iloc[lo:hi]), config.sim)


def window_scores(params: Mapping[str, Any], config: SearchConfig) -> Iterator[float]:
    """The Sharpe of each validation window, window by window (a rule or supervised trial's work;
    usable without Tune)."""
    if config.target == "rule":
        return rule_scores(params, config)
    if config.target == "supervised":
        return supervised_scores(params, config)
    raise ConfigError("an rl target is scored per iteration by rl_trainable")


def window_trainable(params: dict[str, Any], spec: dict[str, Any]) -> None:
    """Tune function trainable for ``rule`` and ``supervised``: one report per window."""
    from ray import tune

    from raytrader.training.tune import SearchConfig

    config = SearchConfig.model_validate(spec)
    sharpes: list[float] = []
    try:
        for i, s in enumerate(window_scores(params, config)):
            sharpes.append(s)
            tune.report({"sharpe": float(np.mean(sharpes)), "fold": i + 1, "fold_sharpe": s})
    except ConfigError as exc:  # e.g. fast >= slow: an invalid corner of the space scores low
        if sharpes:
            raise
        tune.report({"sharpe": INVALID_SCORE, "fold": config.folds, "invalid": str(exc)[:200]})


def rl_trainable(params: dict[str, Any], spec: dict[str, Any]) -> None:
    """Tune function trainable for ``rl``: one report per RLlib iteration with the mean Sharpe
    over the windows; a Tune checkpoint every ``checkpoint_every`` iterations, from which a
    restored search continues the trial."""
    from ray import tune

    from raytrader.envs import TradingEnv
    from raytrader.training.rl import (
        build_algo,
        full_market,
        module_policy,
        policy_targets,
        train_step,
    )
    from raytrader.training.tune import SearchConfig, fold_windows

    config = SearchConfig.model_validate(spec)
    cfg = config.target_config(params)
    market = full_market(cfg)
    train, _ = market.split(cfg.train_fraction)
    normalizer = TradingEnv(train, cfg.env).normalizer
    windows = fold_windows(len(market.bars), config, start=train.hi)
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
            sharpes = []
            for lo, hi in windows:
                bars, targets = policy_targets(
                    cfg.env, policy, market.rows(lo, hi), normalizer, cfg.seed
                )
                sharpes.append(window_sharpe(bars, 0, len(bars), targets, config.sim))
            metrics = {
                "sharpe": float(np.mean(sharpes)),
                "iteration": int(algo.iteration),
                "episode_return_mean": row["episode_return_mean"],
                "restored_from": restored_from,
                **{f"fold_{i + 1}_sharpe": s for i, s in enumerate(sharpes)},
            }
            if algo.iteration % cfg.checkpoint_every and algo.iteration < cfg.iterations:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                algo.save_to_path(str(Path(tmp, "algo").resolve()))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
    finally:
        algo.stop()


__all__ = [
    "INVALID_SCORE",
    "rl_trainable",
    "rule_scores",
    "supervised_scores",
    "window_scores",
    "window_sharpe",
    "window_trainable",
    "with_params",
]
