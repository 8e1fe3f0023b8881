"""Analyst/tactician classifiers: skill on a predictable series, determinism, kernel backtests, Ray."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raytrader.backtest.engine import run_targets
from raytrader.backtest.metrics import column_metrics
from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.features import compute_features
from raytrader.models.supervised import (
    ClassifierConfig,
    TrainResult,
    TripleBarrierLabel,
    WalkForwardConfig,
    build_dataset,
    standard_configs,
    targets_from_proba,
    train,
    train_many,
)
from raytrader.sim import SimConfig
from tests.support.markets import momentum_bars

FREE = SimConfig(commission=0.0, slippage_bps=0.0)


def small_config(**overrides: Any) -> ClassifierConfig:
    base: dict[str, Any] = {
        "timeframe": "5m",
        "labels": {"kind": "fixed_horizon", "horizon": 1},
        "params": {"n_estimators": 40},
        "threshold": 0.5,
        "importance": "impurity",
        "validation": {"n_folds": 4},
    }
    return ClassifierConfig.parse(base | overrides)


@pytest.fixture(scope="module")
def bars() -> Bars:
    return momentum_bars()


@pytest.fixture(scope="module")
def trained(bars: Bars) -> TrainResult:
    return train(small_config(), bars)


def test_classifier_beats_chance_and_a_shuffled_label_baseline(
    bars: Bars, trained: TrainResult
) -> None:
    acc = trained.summary["accuracy"]
    assert len(trained.folds) == 4
    assert acc["mean"] > 0.6  # theory: 2/3 from the last return alone
    assert all(f.metrics["accuracy"] > 0.55 for f in trained.folds)
    assert acc["mean"] > trained.summary["majority_baseline"]["mean"] + 0.05
    for key in ("precision", "recall", "f1"):
        assert 0.5 < trained.summary[key]["mean"] <= 1.0
        assert trained.summary[key]["std"] >= 0.0
    # the same samples with shuffled classes carry no signal
    cfg = small_config()
    ds = build_dataset(bars, cfg)
    shuffled = ds.with_labels(np.random.default_rng(1).permutation(ds.y))
    base = train(cfg.model_copy(update={"fit_final": False}), bars, dataset=shuffled)
    assert abs(base.summary["accuracy"]["mean"] - 0.5) < 0.05
    assert acc["mean"] > base.summary["accuracy"]["mean"] + 0.08
    # the impurity importance finds the features that carry the last return
    top = list(trained.importance)[:8]
    assert {"ret_1", "logret_1", "rocr_1", "oc_ratio", "oc_spread", "bop"} & set(top)
    assert sum(trained.importance.values()) == pytest.approx(1.0)


def test_folds_are_purged_and_in_time_order(trained: TrainResult) -> None:
    folds = trained.folds
    for prev, f in itertools.pairwise(folds):
        assert prev.test_end < f.test_start
    for f in folds:
        # a 1-bar label at the last training bar enters at the next open and exits at the open
        # after that (two bars later), before the test window
        assert f.train_end + pd.Timedelta(minutes=10) < f.test_start
        assert f.n_test == len(f.predictions) == len(f.targets)
    assert str(folds[0].test_start.tz) == "UTC"


def test_dataset_labels_trade_like_the_kernel_and_purge_through_the_exit_fill() -> None:
    # opens gap away from the previous close, so entering at the next open matters
    base = momentum_bars(600, seed=2)
    frame = base.frame.copy()
    gap = np.exp(np.random.default_rng(4).normal(0.0, 0.002, len(frame)))
    frame["open"] = frame["open"] * gap
    frame["high"] = np.maximum(frame["high"], frame["open"])
    frame["low"] = np.minimum(frame["low"], frame["open"])
    bars = Bars.from_frame(frame, symbol="GAP", timeframe="5m")
    h = 3
    cfg = small_config(labels={"kind": "fixed_horizon", "horizon": h})
    assert cfg.labels.entry == "open"
    ds = build_dataset(bars, cfg)
    o = bars.column("open")
    p = ds.bar_pos
    # the class of the sample at bar p: sign of o[p+1+h] / o[p+1] - 1 (fill to fill)
    np.testing.assert_array_equal(ds.y, np.sign(o[p + 1 + h] / o[p + 1] - 1.0).astype(np.int64))
    # its purge horizon reaches the exit fill's bar p+1+h (as a sample position: the last sample
    # at or before that bar, which is the bar itself except at the unlabelled end)
    inner = p + 1 + h <= p[-1]
    np.testing.assert_array_equal(p[ds.ends][inner], (p + 1 + h)[inner])
    assert (p[ds.ends][~inner] == p[-1]).all()
    assert p[-1] == len(bars) - 2 - h  # the last h+1 bars have no exit fill in the data
    # close-to-close stays available, explicitly, and labels differently on gapping bars
    cc = build_dataset(
        bars, small_config(labels={"kind": "fixed_horizon", "horizon": h, "entry": "close"})
    )
    c = bars.column("close")
    np.testing.assert_array_equal(cc.y, np.sign(c[cc.bar_pos + h] / c[cc.bar_pos] - 1.0))
    inner = cc.bar_pos + h <= cc.bar_pos[-1]
    np.testing.assert_array_equal(cc.bar_pos[cc.ends][inner], (cc.bar_pos + h)[inner])
    assert (cc.y[: len(ds.y)] != ds.y).any()


@pytest.mark.parametrize(
    ("estimator", "params"),
    [("random_forest", {"n_estimators": 20}), ("hist_gradient_boosting", {"max_iter": 30})],
)
def test_training_is_deterministic_for_a_fixed_seed(
    bars: Bars, estimator: str, params: dict[str, Any]
) -> None:
    cfg = small_config(
        estimator=estimator,
        params=params,
        importance="permutation",
        importance_repeats=1,
        features=["ret_1", "ret_5", "rsi_14", "bop", "macd_hist", "volatility_20"],
    )
    a, b = train(cfg, bars), train(cfg, bars)
    assert [f.metrics for f in a.folds] == [f.metrics for f in b.folds]
    assert [f.predictions.tolist() for f in a.folds] == [f.predictions.tolist() for f in b.folds]
    assert a.importance == b.importance
    assert len(a.importance) == 6
    pd.testing.assert_series_equal(a.oos_targets, b.oos_targets)
    assert a.model is not None
    assert b.model is not None
    feats = compute_features(bars)
    proba = a.model.predict_proba(feats).to_numpy()
    np.testing.assert_array_equal(proba, b.model.predict_proba(feats).to_numpy())
    if estimator == "random_forest":  # the seed reaches the estimator
        other = train(cfg.model_copy(update={"seed": 1, "fit_final": True}), bars).model
        assert other is not None
        assert not np.array_equal(other.predict_proba(feats).to_numpy(), proba)


def test_targets_backtest_with_the_kernel(bars: Bars, trained: TrainResult) -> None:
    model = trained.model
    assert model is not None
    feats = compute_features(bars)
    targets = model.predict_targets(feats)
    warm = feats["warm"].to_numpy()
    assert targets.shape == (len(bars),)
    assert set(np.unique(targets)) <= {-1.0, 0.0, 1.0}
    assert (targets[~warm] == 0.0).all()
    conf = model.confidence(feats)
    assert np.isnan(conf[~warm]).all()
    assert ((conf[warm] >= 0.0) & (conf[warm] <= 1.0)).all()
    # decided per bar from that bar's features only: a truncated history gives the same prefix
    np.testing.assert_array_equal(model.predict_targets(feats.iloc[:1500]), targets[:1500])

    _, metrics = run_targets(bars, targets, FREE)
    m = column_metrics(metrics, 0)
    assert all(np.isfinite(m[k]) for k in ("total_return", "sharpe", "max_drawdown"))
    assert m["num_trades"] > 10
    in_sample = model.backtest(bars, FREE)
    assert in_sample.metrics["final_equity"] == pytest.approx(m["final_equity"])

    # out of sample: each test window traded by its fold's model, flat elsewhere
    oos = trained.backtest_oos(bars, FREE)
    first_test = trained.folds[0].test_start
    assert (oos.targets[oos.targets.index < first_test] == 0.0).all()
    assert np.isfinite(oos.metrics["sharpe"])
    assert oos.metrics["total_return"] > 0.0  # the momentum is real and costs are zero
    assert oos.metrics["sharpe"] > 1.0
    # with costs the kernel still produces finite numbers
    costly = trained.backtest_oos(bars, SimConfig(commission=0.001, slippage_bps=5.0))
    assert np.isfinite(costly.metrics["total_return"])
    assert costly.metrics["final_equity"] < oos.metrics["final_equity"]


def test_targets_from_probabilities() -> None:
    up = np.array([0.7, 0.3, 0.5, 0.52, np.nan, 0.45])
    down = np.array([0.3, 0.7, 0.5, 0.48, np.nan, 0.10])
    np.testing.assert_array_equal(
        targets_from_proba(up, down, 0.5), [1.0, -1.0, 0.0, 1.0, 0.0, 0.0]
    )
    np.testing.assert_array_equal(
        targets_from_proba(up, down, 0.6), [1.0, -1.0, 0.0, 0.0, 0.0, 0.0]
    )
    np.testing.assert_array_equal(
        targets_from_proba(up, down, 0.5, long_only=True), [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    )


def test_triple_barrier_tactician_trains_and_trades() -> None:
    bars = momentum_bars(2500, seed=3)
    # a tactician trades 1m bars: relabel the same series as 1m
    frame = bars.frame.copy()
    frame.index = pd.date_range("2024-01-01", periods=len(frame), freq="1min", tz="UTC")
    one_min = Bars.from_frame(frame, symbol="MOM", timeframe="1m")
    cfg = ClassifierConfig(
        role="tactician",
        timeframe="1m",
        labels=TripleBarrierLabel(horizon=4, upper=1.0, lower=1.0, vol_window=20),
        estimator="hist_gradient_boosting",
        params={"max_iter": 40},
        importance="none",
        threshold=0.5,
        validation=WalkForwardConfig(n_folds=3, embargo=5),
    )
    res = train(cfg, one_min)
    assert res.summary["accuracy"]["mean"] > 0.55
    assert res.importance == {}
    assert res.describe()["name"] == "tactician_1m_triple_barrier_hist_gradient_boosting"
    assert np.isfinite(res.backtest_oos(one_min, FREE).metrics["sharpe"])


def test_standard_configs_cover_the_roles() -> None:
    cfgs = standard_configs(seed=3)
    assert [(c.role, c.timeframe) for c in cfgs] == [
        ("analyst", "1h"),
        ("analyst", "15m"),
        ("analyst", "5m"),
        ("analyst", "1m"),
        ("tactician", "1m"),
    ]
    assert cfgs[0].dataset == "eurusd"
    assert cfgs[1].dataset.startswith("synthetic:")
    assert "timeframe=15m" in cfgs[1].dataset
    assert cfgs[4].labels.kind == "triple_barrier"
    assert all(c.seed == 3 for c in cfgs)
    # a config round-trips through JSON (CLI flags, RayJob entrypoints)
    assert ClassifierConfig.parse(cfgs[4].model_dump(mode="json")) == cfgs[4]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"role": "tactician", "timeframe": "5m"}, "tactician trades 1m bars"),
        ({"timeframe": "4h"}, r"ClassifierConfig\.timeframe"),
        ({"params": {"n_trees": 5}}, r"unknown random_forest parameter\(s\) \['n_trees'\]"),
        ({"params": {"random_state": 1}}, "use seed"),
        ({"estimator": "hist_gradient_boosting", "importance": "impurity"}, "impurity"),
        ({"features": ["ret_1", "nope"]}, r"unknown feature\(s\) \['nope'\]"),
        ({"threshold": 1.5}, r"ClassifierConfig\.threshold"),
        ({"labels": {"kind": "triple_barrier", "upper": 0}}, r"labels\.triple_barrier\.upper"),
        ({"labels": {"kind": "fixed", "horizon": 3}}, r"ClassifierConfig\.labels"),
        ({"horizon": 3}, r"ClassifierConfig\.horizon: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_a_config_error(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ClassifierConfig.parse(data)


def test_bad_inputs_are_config_errors(bars: Bars, trained: TrainResult) -> None:
    frame = bars.frame.copy()
    frame.index = pd.date_range("2024-01-01", periods=len(frame), freq="1h", tz="UTC")
    hourly = Bars.from_frame(frame, symbol="MOM", timeframe="1h")
    with pytest.raises(ConfigError, match="5m model but MOM bars are 1h"):
        train(small_config(), hourly)
    with pytest.raises(ConfigError, match=r"fitting random_forest failed: .*n_estimators"):
        train(small_config(params={"n_estimators": -1}), bars)
    model = trained.model
    assert model is not None
    feats = compute_features(bars)
    with pytest.raises(ConfigError, match="timezone-aware UTC"):
        model.predict_targets(feats.tz_localize(None))
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['warm'\]"):
        model.predict_targets(feats.drop(columns="warm"))


@pytest.mark.integration
@pytest.mark.slow
def test_ray_tasks_match_serial_training(bars: Bars) -> None:
    import ray

    configs = [
        small_config(seed=0),
        small_config(
            estimator="hist_gradient_boosting", params={"max_iter": 30}, importance="none"
        ),
        small_config(
            labels={"kind": "triple_barrier", "horizon": 3, "upper": 1.0, "lower": 1.0},
            importance="permutation",
            importance_repeats=1,
            features=["ret_1", "ret_5", "bop", "rsi_14"],
            seed=5,
        ),
    ]
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        parallel = train_many(configs, bars)
    finally:
        ray.shutdown()
    serial = [train(c, bars) for c in configs]
    feats = compute_features(bars)
    for p, s in zip(parallel, serial, strict=True):
        assert p.config == s.config
        assert [f.metrics for f in p.folds] == [f.metrics for f in s.folds]
        assert p.importance == s.importance
        pd.testing.assert_series_equal(p.oos_targets, s.oos_targets)
        assert p.model is not None
        assert s.model is not None
        np.testing.assert_array_equal(
            p.model.predict_targets(feats), s.model.predict_targets(feats)
        )
        np.testing.assert_array_equal(p.model.confidence(feats), s.model.confidence(feats))


@pytest.mark.slow
def test_eurusd_hourly_analyst_runs_end_to_end(eurusd: Bars) -> None:
    """The real-data 1h analyst (default config, its default data set, impurity importance): finite
    metrics and a kernel backtest; no claim of skill on real prices."""
    cfg = ClassifierConfig(timeframe="1h", importance="impurity")
    assert cfg.dataset == "eurusd"
    res = train(cfg)
    assert res.symbol == eurusd.symbol
    assert len(res.folds) == 5
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0.0 <= res.summary[key]["mean"] <= 1.0
    assert 0.35 < res.summary["accuracy"]["mean"] < 0.65
    assert np.isfinite(res.backtest_oos(eurusd).metrics["final_equity"])
