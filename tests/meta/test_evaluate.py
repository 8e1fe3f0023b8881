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
from raytrader.meta.evaluate import claim, evaluate_targets
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


def test_bad_candidates_are_named() -> None:
    bars = synthetic_bars(n_bars=200, seed=1, timeframe="1d")
    flat = pd.Series(0.0, index=bars.index)
    with pytest.raises(ConfigError, match="benchmark 'equal' is not among"):
        evaluate_targets(bars, {"flat": flat})
    with pytest.raises(ConfigError, match="candidate 'short'"):
        evaluate_targets(bars, {"equal": flat, "short": flat.iloc[:-1]})
