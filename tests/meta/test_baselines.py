"""The baselines over the same members: causal (a prefix gives the same targets), combined by the
one combiner, each with its defining behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Bars
from raytrader.data.synthetic import synthetic_bars
from raytrader.errors import ConfigError
from raytrader.meta.baselines import BASELINES, baseline_target, baseline_weights
from raytrader.meta.dataset import member_returns
from raytrader.strategies.combine import combine
from tests.meta.test_dataset import _inputs


def _members(bars: Bars) -> tuple[pd.DataFrame, pd.DataFrame]:
    targets = _inputs(bars)[2]
    return member_returns(bars, targets), targets


@pytest.fixture(scope="module")
def bars() -> Bars:
    return synthetic_bars(n_bars=800, seed=9, timeframe="1d")


@pytest.mark.parametrize("kind", BASELINES)
def test_a_prefix_gives_the_same_targets_and_weights_sum_to_one(bars: Bars, kind: str) -> None:
    returns, targets = _members(bars)
    full = baseline_target(kind, returns, targets)
    cut = 500
    short = Bars.from_frame(bars.frame.iloc[:cut], symbol=bars.symbol, timeframe="1d")
    pd.testing.assert_series_equal(baseline_target(kind, *_members(short)), full.iloc[:cut])
    weights = baseline_weights(kind, returns)
    sums = weights.sum(axis=1)
    assert ((np.abs(sums - 1) < 1e-9) | (sums == 0)).all()


def test_equal_weight_is_the_ensembles_average(bars: Bars) -> None:
    returns, targets = _members(bars)
    average = combine(targets.to_numpy(), "average").target
    np.testing.assert_allclose(baseline_target("equal", returns, targets), average)


def test_best_single_holds_one_member_and_rechooses_on_schedule(bars: Bars) -> None:
    returns, _ = _members(bars)
    weights = baseline_weights("best_single", returns, refit_bars=21)
    held = weights[weights.sum(axis=1) > 0]
    assert (held.max(axis=1) == 1.0).all()
    changes = np.flatnonzero((held.diff().abs().sum(axis=1) > 0).to_numpy()[1:]) + 1
    positions = [weights.index.get_loc(held.index[c]) for c in changes]
    assert all(p % 21 == 0 for p in positions)


def test_fixed_share_keeps_every_member_alive_and_bad_settings_are_named(bars: Bars) -> None:
    returns, targets = _members(bars)
    weights = baseline_weights("fixed_share", returns, alpha=0.05)
    assert (weights.to_numpy() >= 0.05 / returns.shape[1] - 1e-12).all()
    with pytest.raises(ConfigError, match="alpha"):
        baseline_weights("fixed_share", returns, alpha=1.5)
    with pytest.raises(ConfigError, match="unknown baseline 'oracle'"):
        baseline_weights("oracle", returns)
    with pytest.raises(ConfigError, match="unknown baseline options"):
        baseline_target("equal", returns, targets, gamma=1.0)


def test_dma_without_forgetting_is_hedge_and_forgets_otherwise(bars: Bars) -> None:
    returns, _ = _members(bars)
    hedge = baseline_weights("fixed_share", returns, alpha=0.0)
    np.testing.assert_allclose(baseline_weights("dma", returns, forgetting=1.0), hedge, atol=1e-9)
    forgetful = baseline_weights("dma", returns, forgetting=0.9)
    # with forgetting, no member's weight can run away for good: evidence older than ~10 bars fades
    assert forgetful.max(axis=1).mean() < hedge.max(axis=1).mean()
    with pytest.raises(ConfigError, match="forgetting"):
        baseline_weights("dma", returns, forgetting=0.0)
