"""The meta ensemble's loop: causal (a prefix gives the same weights and targets), deterministic,
weights within the preset's bounds, refits gated and recorded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Bars
from raytrader.data.synthetic import synthetic_bars
from raytrader.errors import ConfigError
from raytrader.meta.dataset import predictor_rows
from raytrader.meta.loop import MetaConfig, MetaRun, run_meta
from raytrader.meta.weights import preset
from tests.meta.test_dataset import HORIZON, _inputs, _trainings

CONFIG = MetaConfig(predictor="table", preset="research", refit_bars=21, min_rows=100)


def _run(bars: Bars, config: MetaConfig = CONFIG) -> MetaRun:
    features, regimes, targets = _inputs(bars)
    last = dict.fromkeys(targets.columns, 149)
    rows = predictor_rows(bars, features, regimes, targets, _trainings(bars, last), HORIZON)
    return run_meta(rows, targets, config, close=bars.frame["close"])


@pytest.fixture(scope="module")
def bars() -> Bars:
    return synthetic_bars(n_bars=900, seed=8, timeframe="1d")


def test_a_prefix_gives_the_same_weights_and_targets(bars: Bars) -> None:
    full = _run(bars)
    cut = 600
    short = _run(Bars.from_frame(bars.frame.iloc[:cut], symbol=bars.symbol, timeframe="1d"))
    pd.testing.assert_frame_equal(short.frame, full.frame.iloc[:cut])
    pd.testing.assert_frame_equal(short.weights, full.weights.iloc[:cut])
    again = _run(bars)
    pd.testing.assert_frame_equal(again.frame, full.frame)


def test_weights_sum_to_one_within_the_cap_once_the_predictor_is_fitted(bars: Bars) -> None:
    config = MetaConfig(predictor="ridge", preset="balanced", refit_bars=21, min_rows=100)
    run = _run(bars, config)
    cap = preset("balanced").cap
    active = run.frame["predictor_version"] > 0
    assert active.any()
    sums = run.weights[active].sum(axis=1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    assert (run.weights.to_numpy() <= cap + 1e-9).all()
    assert (run.weights[~active] == 0).all().all()
    assert run.frame["target"][~active].isna().all()  # no predictor yet: no decision
    assert run.frame["target"][active].between(-1, 1).all()
    assert set(run.refits.columns) >= {"time", "accepted", "candidate_ic", "current_ic", "fallback"}
    assert run.refits["version"].is_monotonic_increasing


def test_kelly_needs_the_closes(bars: Bars) -> None:
    features, regimes, targets = _inputs(bars)
    rows = predictor_rows(
        bars, features, regimes, targets, _trainings(bars, dict.fromkeys(targets.columns, 149)), 5
    )
    with pytest.raises(ConfigError, match="Kelly sizing needs the asset's closes"):
        run_meta(rows, targets, MetaConfig(preset="balanced"))
