"""The predictors' one interface, their scores, and the walk-forward's purge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.data.synthetic import synthetic_bars
from raytrader.errors import ConfigError
from raytrader.meta.predictors import (
    KINDS,
    TablePredictor,
    closed_rows,
    make_predictor,
    score_predictions,
    walk_forward,
)
from raytrader.meta.regimes import REGIMES
from raytrader.meta.train import DETERMINISTIC
from tests.meta.test_dataset import HORIZON, _inputs, _trainings

TIMES = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    from raytrader.meta.dataset import predictor_rows

    bars = synthetic_bars(n_bars=1500, seed=6, timeframe="1d")
    last = {"ma_cross": 199, "rsi": 199, "momentum": 199}
    return predictor_rows(bars, *_inputs(bars), _trainings(bars, last), HORIZON)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_fits_and_predicts_one_finite_score_per_row_deterministically(
    rows: pd.DataFrame, kind: str
) -> None:
    train = closed_rows(rows, rows["time"].iloc[len(rows) // 2])
    test = rows.iloc[len(rows) // 2 :]
    first = make_predictor(kind).fit(train).predict(test)
    again = make_predictor(kind).fit(train).predict(test)
    assert first.shape == (len(test),)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)


def test_the_mlps_seeds_are_distinct_draws_and_the_deterministic_kinds_ignore_theirs(
    rows: pd.DataFrame,
) -> None:
    """``meta train`` reports a mean ± std over the MLP's seeds: they must be different fits (an
    ignored seed gives a std of 0); the kinds it runs once must not depend on the seed."""
    train = closed_rows(rows, rows["time"].iloc[len(rows) // 2])
    test = rows.iloc[len(rows) // 2 :]

    def draw(kind: str, seed: int) -> np.ndarray:
        return make_predictor(kind, seed).fit(train).predict(test)

    assert not np.array_equal(draw("mlp", 1), draw("mlp", 2))
    for kind in DETERMINISTIC:
        np.testing.assert_array_equal(draw(kind, 1), draw(kind, 2))


def _frame(members: list[str], labels: list[float], regime: str) -> pd.DataFrame:
    frame = pd.DataFrame({"time": TIMES[0], "member": members, "label": labels})
    for name in REGIMES:
        frame[f"regime_{name}"] = float(name == regime)
    return frame


def test_the_table_shrinks_a_regimes_mean_toward_the_members() -> None:
    train = pd.concat(
        [_frame(["a"] * 10, [1.0] * 10, "crisis"), _frame(["a"] * 30, [0.0] * 30, "low_vol_range")]
    )
    table = TablePredictor(prior_rows=10.0).fit(train)
    member_mean = 10 / 40
    crisis = (10 * 1.0 + 10 * member_mean) / 20
    got = table.predict(
        pd.concat([_frame(["a"], [0.0], "crisis"), _frame(["b"], [0.0], "breakout")])
    )
    np.testing.assert_allclose(got, [crisis, member_mean])  # b: unseen member, the overall mean


def test_a_perfect_and_a_reversed_ranking_score_plus_and_minus_one() -> None:
    frame = pd.DataFrame(
        {
            "time": np.repeat(TIMES, 3),
            "member": ["a", "b", "c"] * 4,
            "label": [0.1, 0.5, -0.2, 0.3, -0.1, 0.0, 1.0, 2.0, 3.0, -1.0, 0.0, 1.0],
        }
    )
    best = score_predictions(frame, frame["label"].to_numpy(), "oracle", lags=1)
    assert (best.ic, best.hit_rate, best.bars) == (1.0, 1.0, 4)
    worst = score_predictions(frame, -frame["label"].to_numpy(), "reversed", lags=1)
    assert (worst.ic, worst.hit_rate) == (-1.0, 0.0)


def test_the_walk_forward_learns_only_from_labels_closed_at_each_refit(rows: pd.DataFrame) -> None:
    at = rows["time"].iloc[len(rows) // 3]
    closed = closed_rows(rows, at)
    assert (pd.DatetimeIndex(closed["label_time"]) <= at).all()
    assert closed["label"].notna().all()
    predictions = walk_forward(rows, "table", refit_bars=50)
    first = pd.DatetimeIndex(rows["time"]).unique()[0]
    assert np.isnan(predictions[rows["time"].to_numpy() == first]).all()  # nothing had closed
    assert np.isfinite(predictions[-100:]).all()
    with pytest.raises(ConfigError, match="refit_bars"):
        walk_forward(rows, "ewma", 0)
    with pytest.raises(ConfigError, match="unknown predictor 'lstm'"):
        make_predictor("lstm")
