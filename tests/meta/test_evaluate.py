"""The comparison's statistics: a look-ahead oracle is found to beat equal weight, a copy of the
benchmark is not, and the claim rule follows the thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.data.synthetic import synthetic_bars
from raytrader.errors import ConfigError
from raytrader.meta.baselines import baseline_target
from raytrader.meta.dataset import member_returns
from raytrader.meta.evaluate import claim, confidence_set, evaluate_targets
from raytrader.sim.config import SimConfig
from tests.meta.test_dataset import _inputs


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    bars = synthetic_bars(n_bars=1000, seed=12, timeframe="1d")
    targets = _inputs(bars)[2]
    equal = baseline_target("equal", member_returns(bars, targets), targets)
    opens = bars.column("open")
    # not investable: long when the next fill-to-fill move is up (the kernel fills at next open)
    ahead = np.sign(np.concatenate([opens[2:] / opens[1:-1] - 1.0, [0.0, 0.0]]))
    oracle = pd.Series(ahead, index=bars.index)
    return evaluate_targets(
        bars,
        {"equal": equal, "oracle": oracle, "copy": equal.copy()},
        tried=("oracle", "copy"),
        reps=300,
    )


def test_a_look_ahead_oracle_beats_equal_weight_and_a_copy_does_not(table: pd.DataFrame) -> None:
    oracle, copy = table.loc["oracle"], table.loc["copy"]
    assert oracle["spa_p"] < 0.05
    assert oracle["sharpe_diff_low"] > 0
    assert oracle["dsr"] > 0.99
    assert oracle["sharpe"] > 3
    assert copy["spa_p"] == 1.0  # no difference, no evidence (arch alone says 0)
    assert copy["sharpe_diff_low"] == copy["sharpe_diff_high"] == 0.0
    assert claim(table, "oracle").startswith("oracle beats equal: SPA p")
    assert claim(table, "copy").startswith("copy does not beat equal")
    assert table.attrs["trials"] == 2
    assert set(table.columns) >= {"sharpe", "max_drawdown", "turnover", "psr", "dsr", "spa_p"}


def test_the_confidence_set_keeps_the_oracle_alone_and_counts_a_copy_once(
    table: pd.DataFrame,
) -> None:
    # the look-ahead oracle's losses are below equal weight's (and its copy's) by far
    assert table["in_mcs"].to_dict() == {"equal": False, "oracle": True, "copy": False}
    returns = {"a": np.array([0.01, -0.02, 0.03]), "b": np.array([0.01, -0.02, 0.03])}
    assert confidence_set(returns, reps=100, seed=0, block=1) == {"a", "b"}


def test_cost_drag_is_what_costs_took(table: pd.DataFrame) -> None:
    # the oracle trades nearly every bar: 12 bps a fill costs it far more than equal weight
    assert table.loc["oracle", "cost_drag"] > 5 * table.loc["equal", "cost_drag"] > 0
    free = SimConfig(commission=0.0, slippage_bps=0.0)
    bars = synthetic_bars(n_bars=300, seed=3, timeframe="1d")
    flip = pd.Series(np.where(np.arange(300) % 2 == 0, 1.0, -1.0), index=bars.index)
    costless = evaluate_targets(bars, {"equal": flip}, config=free, reps=100)
    assert costless.loc["equal", "cost_drag"] == 0.0


def test_weight_columns_count_active_members_and_concentration() -> None:
    bars = synthetic_bars(n_bars=300, seed=3, timeframe="1d")
    target = pd.Series(1.0, index=bars.index)
    # bars 0-99 none held; then 50/50 over two of three; then 0.995/0.005 (one active)
    w = np.zeros((300, 3))
    w[100:200, :2] = 0.5
    w[200:, 0], w[200:, 2] = 0.995, 0.005
    weights = pd.DataFrame(w, index=bars.index, columns=["a", "b", "c"])
    row = evaluate_targets(bars, {"equal": target}, weights={"equal": weights}, reps=100)
    assert row.loc["equal", "active_members"] == pytest.approx(1.5)
    assert row.loc["equal", "weight_concentration"] == pytest.approx(
        (0.5 + 0.995**2 + 0.005**2) / 2
    )
    with pytest.raises(ConfigError, match="weights or references name no candidate"):
        evaluate_targets(bars, {"equal": target}, weights={"other": weights})
    with pytest.raises(ConfigError, match="must be finite and non-negative"):
        evaluate_targets(bars, {"equal": target}, weights={"equal": -weights})


def test_bad_candidates_are_named() -> None:
    bars = synthetic_bars(n_bars=200, seed=1, timeframe="1d")
    flat = pd.Series(0.0, index=bars.index)
    with pytest.raises(ConfigError, match="benchmark 'equal' is not among"):
        evaluate_targets(bars, {"flat": flat})
    with pytest.raises(ConfigError, match="candidate 'short'"):
        evaluate_targets(bars, {"equal": flat, "short": flat.iloc[:-1]})
