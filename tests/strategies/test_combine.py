"""The one combiner (weighted / average / voting) on hand-computed rows: missing members are
masked and the present members' weights renormalized; a row with no member present is NaN."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.errors import ConfigError
from raytrader.strategies.combine import combine

NAN = np.nan
# members a, b, c weigh 2, 1, 1; NaN = the member is missing on that row
T = np.array(
    [
        [1.0, -1.0, NAN],  # c missing
        [NAN, 0.5, -0.5],  # a missing
        [NAN, NAN, NAN],  # all missing
        [0.0, 0.0, 1.0],  # all present
        [-0.5, NAN, 1.0],  # b missing
    ]
)
C = np.array(
    [
        [0.75, 0.5, 0.25],  # c's 0.25 is ignored: c is missing
        [NAN, 0.5, 1.0],
        [NAN, NAN, NAN],
        [0.5, 0.25, 1.0],
        [1.0, NAN, 0.5],
    ]
)
W = np.array([2.0, 1.0, 1.0])
NAMES = ["a", "b", "c"]


def _same(got: np.ndarray, want: list[float]) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0.0, equal_nan=True)


def test_weighted_masks_missing_members_and_renormalizes_the_others() -> None:
    got = combine(T, "weighted", weights=W, confidences=C, names=NAMES)
    # row 0: (2*1 + 1*-1) / (2+1) = 1/3 (not (2 - 1 + 0) / 4 = 1/4: c does not dilute toward flat)
    # row 1: (1*0.5 + 1*-0.5) / 2 = 0;  row 2: nobody present -> NaN
    # row 3: (0 + 0 + 1*1) / 4 = 1/4;   row 4: (2*-0.5 + 1*1) / (2+1) = 0
    _same(got.target, [1 / 3, 0.0, NAN, 0.25, 0.0])
    # confidences, same weights: (2*0.75 + 0.5)/3, (0.5 + 1)/2, 0 (no decision),
    # (2*0.5 + 0.25 + 1)/4, (2*1 + 0.5)/3
    _same(got.confidence, [2 / 3, 0.75, 0.0, 0.5625, 2.5 / 3])
    assert got.missing.tolist() == np.isnan(T).tolist()
    assert got.members_missing.tolist() == [1, 1, 3, 0, 1]


def test_average_is_weighted_with_equal_weights_over_the_present_members() -> None:
    got = combine(T, "average", weights=W, confidences=C)  # given weights are ignored
    # row 0: (1 - 1)/2; row 1: (0.5 - 0.5)/2; row 3: 1/3; row 4: (-0.5 + 1)/2
    _same(got.target, [0.0, 0.0, NAN, 1 / 3, 0.25])
    _same(got.confidence, [0.625, 0.75, 0.0, 1.75 / 3, 0.75])


def test_voting_takes_the_heaviest_side_of_the_present_members() -> None:
    got = combine(T, "voting", weights=W, names=NAMES)
    # row 0: long 2 vs short 1 (c missing)          -> +1, 2/3 of the present weight 3
    # row 1: long 1 vs short 1 (a missing)          -> tie: 0 with confidence 0
    # row 2: nobody                                 -> NaN, 0
    # row 3: flat 2+1 vs long 1                     -> 0 (flat wins), 3/4
    # row 4: short 2 vs long 1 (b missing)          -> -1, 2/3
    _same(got.target, [1.0, 0.0, NAN, 0.0, -1.0])
    _same(got.confidence, [2 / 3, 0.0, 0.0, 0.75, 2 / 3])
    assert got.members_missing.tolist() == [1, 1, 3, 0, 1]


def test_voting_tie_between_flat_and_a_side_is_flat_with_no_confidence() -> None:
    # equal weights: long 2, flat 2, short 1 -> long and flat tie
    got = combine(np.array([[1.0, 0.5, 0.0, 0.0, -1.0]]), "voting")
    assert got.target.tolist() == [0.0]
    assert got.confidence.tolist() == [0.0]


def test_without_confidences_a_member_is_confident_where_it_holds_a_position() -> None:
    got = combine(T, "weighted", weights=W)
    # row 0: a and b hold positions -> 1; row 1: b, c hold -> 1; row 3: only c (weight 1 of 4)
    # row 4: a and c hold -> 1
    _same(got.confidence, [1.0, 1.0, 0.0, 0.25, 1.0])


def test_a_nan_confidence_of_a_present_member_counts_as_zero() -> None:
    got = combine(np.array([[1.0, 1.0]]), "weighted", confidences=np.array([[NAN, 0.5]]))
    assert got.target.tolist() == [1.0]
    assert got.confidence.tolist() == [0.25]


def test_per_row_weights_are_renormalized_over_the_present_members() -> None:
    t = np.array([[1.0, -1.0, NAN], [1.0, 0.0, -1.0]])
    w = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    got = combine(t, "weighted", weights=w)
    # row 0: (0.5 - 0.25) / 0.75 = 1/3; row 1: (0.2 - 0.5) / 1.0 = -0.3
    _same(got.target, [1 / 3, -0.3])


def test_present_members_that_all_weigh_zero_decide_nothing() -> None:
    t = np.array([[1.0, NAN], [1.0, -1.0]])
    got = combine(t, "weighted", weights=np.array([0.0, 1.0]))
    assert np.isnan(got.target[0])  # a is present but weighs 0, b is missing
    assert got.confidence[0] == 0.0
    assert got.target[1] == -1.0
    assert got.members_missing.tolist() == [1, 0]  # a weighing 0 is not missing


@pytest.mark.parametrize("method", ["weighted", "average", "voting"])
def test_a_row_with_every_member_missing_is_nan_with_zero_confidence(method: str) -> None:
    got = combine(np.full((2, 3), NAN), method, weights=W)
    assert np.isnan(got.target).all()
    assert got.confidence.tolist() == [0.0, 0.0]
    assert got.members_missing.tolist() == [3, 3]


@pytest.mark.parametrize("method", ["weighted", "average", "voting"])
def test_without_missing_members_the_target_stays_in_range_and_is_deterministic(
    method: str,
) -> None:
    rng = np.random.default_rng(5)
    t = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(500, 4))
    w = rng.random(4) + 0.1
    got = combine(t, method, weights=w)
    again = combine(t.copy(), method, weights=w.copy())
    assert np.array_equal(got.target, again.target)
    assert np.array_equal(got.confidence, again.confidence)
    assert np.isfinite(got.target).all()
    assert (np.abs(got.target) <= 1.0).all()
    assert ((got.confidence >= 0.0) & (got.confidence <= 1.0)).all()


def test_a_negative_weight_is_refused_naming_the_member() -> None:
    with pytest.raises(ConfigError, match=r"member b: weight -1.0 must be finite and >= 0"):
        combine(T, "weighted", weights=np.array([1.0, -1.0, 1.0]), names=NAMES)
    per_row = np.ones_like(T)
    per_row[3, 2] = np.nan
    with pytest.raises(ConfigError, match=r"member c: weight nan must be finite"):
        combine(T, "voting", weights=per_row, names=NAMES)


def test_bad_inputs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown ensemble method 'mean'"):
        combine(T, "mean")
    with pytest.raises(ConfigError, match=r"member a: target 1.5 at row 0 is outside \[-1, 1\]"):
        combine(np.array([[1.5, 0.0, 0.0]]), "weighted", names=NAMES)
    with pytest.raises(ConfigError, match="weights must be per member"):
        combine(T, "weighted", weights=np.ones(2))
    with pytest.raises(ConfigError, match="confidences are"):
        combine(T, "weighted", confidences=np.ones((1, 3)))
