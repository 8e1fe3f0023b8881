"""The predictor's rows: member returns from the kernel, rows only out of sample, features that
do not change when later bars do, labels that close horizon bars later."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.backtest.engine import run_backtest, strategy_targets
from raytrader.data import Bars
from raytrader.data.synthetic import synthetic_bars
from raytrader.errors import ConfigError
from raytrader.features.engine import compute_features
from raytrader.meta.dataset import TRACK_FEATURES, member_returns, predictor_rows
from raytrader.meta.regimes import detect_regimes
from raytrader.meta.track_record import MemberTraining
from raytrader.strategies.base import make_strategy

MEMBERS = {
    "ma_cross": {"fast": 10, "slow": 50},
    "rsi": {},
    "momentum": {},
}
HORIZON = 5


def _inputs(bars: Bars) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    features = compute_features(bars)
    regimes = detect_regimes(features, bars.column("close"))
    targets = pd.DataFrame(
        {
            name: strategy_targets(make_strategy(name, params), bars)
            for name, params in MEMBERS.items()
        }
    )
    return features, regimes, targets


def _trainings(bars: Bars, last: dict[str, int]) -> dict[str, MemberTraining]:
    return {name: MemberTraining(name, bars.index[i]) for name, i in last.items()}


@pytest.fixture(scope="module")
def bars() -> Bars:
    return synthetic_bars(n_bars=1200, seed=4, timeframe="1d")


def test_member_returns_are_the_kernels(bars: Bars) -> None:
    _, _, targets = _inputs(bars)
    returns = member_returns(bars, targets)
    alone = run_backtest(bars, targets["rsi"])
    np.testing.assert_array_equal(returns["rsi"].to_numpy(), alone.returns.to_numpy())


def test_rows_start_out_of_sample_and_labels_close_horizon_bars_later(bars: Bars) -> None:
    features, regimes, targets = _inputs(bars)
    last = {"ma_cross": 299, "rsi": 499, "momentum": 399}
    rows = predictor_rows(bars, features, regimes, targets, _trainings(bars, last), HORIZON)
    for member, i in last.items():
        mine = rows[rows["member"] == member]
        assert mine["time"].iloc[0] == bars.index[i + 1 + HORIZON]
        assert (mine[f"member_{member}"] == 1.0).all()
        # the label of the last horizon bars has not closed
        assert mine["label"].iloc[-HORIZON:].isna().all()
        assert mine["label_time"].iloc[-HORIZON:].isna().all()
        closed = mine.iloc[:-HORIZON]
        assert closed["label"].notna().all()
        lag = pd.DatetimeIndex(closed["label_time"]) - pd.DatetimeIndex(closed["time"])
        assert (lag == pd.Timedelta(days=HORIZON)).all()
    assert set(TRACK_FEATURES) <= set(rows.columns)
    assert rows["regime_confidence"].between(0, 1).all()


def test_a_prefix_gives_the_same_rows_up_to_the_labels_that_had_closed(bars: Bars) -> None:
    last = {"ma_cross": 299, "rsi": 299, "momentum": 299}
    full = predictor_rows(bars, *_inputs(bars), _trainings(bars, last), HORIZON)
    cut = 900
    short = Bars.from_frame(bars.frame.iloc[:cut], symbol=bars.symbol, timeframe="1d")
    prefix = predictor_rows(short, *_inputs(short), _trainings(short, last), HORIZON)
    features = [c for c in full.columns if c not in ("label", "label_time")]
    before = full[full["time"] < short.index[-1]].reset_index(drop=True)
    mine = prefix[prefix["time"] < short.index[-1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[features], before[features])
    closed = mine["label"].notna()
    np.testing.assert_array_equal(mine.loc[closed, "label"], before.loc[closed, "label"])


def test_missing_spans_and_misaligned_inputs_are_named(bars: Bars) -> None:
    features, regimes, targets = _inputs(bars)
    with pytest.raises(
        ConfigError, match=r"no training span for member\(s\) \['rsi', 'momentum'\]"
    ):
        predictor_rows(bars, features, regimes, targets, _trainings(bars, {"ma_cross": 10}), 5)
    with pytest.raises(ConfigError, match="regimes must be indexed"):
        predictor_rows(bars, features, regimes.iloc[1:], targets, {}, 5)
    last = dict.fromkeys(MEMBERS, len(bars) - 2)
    with pytest.raises(ConfigError, match="no member has an out-of-sample bar"):
        predictor_rows(bars, features, regimes, targets, _trainings(bars, last), 5)
