"""The runner's ensemble: inverse-volatility weights (hand-computed values, no lookahead, zero
variance) and the members' targets combined by the one combiner."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.errors import ConfigError
from raytrader.strategies.ensemble import combine_members, inverse_volatility_weights

NAN = np.nan

# lookback 3, min_periods 2. Sample standard deviations (ddof 1) of each member's window:
#   bar 0: one return each           -> fewer than 2: equal weights 1/2, 1/2
#   bar 1: A [0, .02]  -> .02/sqrt2;  B [0, .01]     -> .01/sqrt2  => 1/vol 1 : 2 -> 1/3, 2/3
#   bar 2: A [0, .02, .04] -> .02;    B [0, .01, .02] -> .01       => 1/3, 2/3
#   bar 3: A [.02, .04, 0] -> .02;    B [.01, .02, .015] -> .005   => 50 : 200 -> 0.2, 0.8
A = [0.00, 0.02, 0.04, 0.00]
B = [0.00, 0.01, 0.02, 0.015]


def test_inverse_volatility_weights_equal_the_hand_computed_values() -> None:
    w = inverse_volatility_weights(np.column_stack([A, B]), lookback=3, min_periods=2)
    np.testing.assert_allclose(
        w, [[0.5, 0.5], [1 / 3, 2 / 3], [1 / 3, 2 / 3], [0.2, 0.8]], rtol=1e-12
    )
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-15)


def test_the_weighted_ensemble_with_inverse_volatility_weights_by_hand() -> None:
    # A long, B short on every bar: target = w_A - w_B = 0, -1/3, -1/3, 0.2 - 0.8 = -0.6
    targets = {"A": np.ones(4), "B": -np.ones(4)}
    rets = {"A": np.array(A), "B": np.array(B)}
    got = combine_members(targets, "weighted", member_returns=rets, lookback=3, min_periods=2)
    np.testing.assert_allclose(got.target, [0.0, -1 / 3, -1 / 3, -0.6], atol=1e-15)
    # the reported weights are the per-bar weights' means: A (0.5 + 1/3 + 1/3 + 0.2) / 4
    assert got.weights["A"] == pytest.approx((0.5 + 2 / 3 + 0.2) / 4)
    assert got.members_missing == {"A": 0, "B": 0}


def test_a_missing_member_is_masked_and_the_others_renormalized() -> None:
    # B has no target on bars 1 and 3: there the ensemble is A's target alone
    targets = {"A": np.full(4, 0.5), "B": np.array([-1.0, NAN, -1.0, NAN])}
    rets = {"A": np.array(A), "B": np.array(B)}
    got = combine_members(targets, "weighted", member_returns=rets, lookback=3, min_periods=2)
    # bar 0: 0.5*0.5 - 0.5; bar 2: 0.5/3 - 2/3
    np.testing.assert_allclose(got.target, [-0.25, 0.5, -0.5, 0.5], atol=1e-15)
    assert got.members_missing == {"A": 0, "B": 2}
    none = combine_members({"A": np.full(4, NAN)}, "weighted", member_returns={"A": np.array(A)})
    assert np.isnan(none.target).all()  # no member: no decision (the kernel keeps the target)


def test_a_zero_variance_member_makes_its_bars_equal_weight() -> None:
    # Z's returns are constant until bar 4: its volatility is 0, 1/vol has no finite value, and
    # those bars weigh every member equally. At bar 4, Z [.01, .01, .03] -> .02/sqrt3 and
    # A [.04, 0, .02] -> .02, so 1/vol is 50 : 50 sqrt3 -> 1/(1+sqrt3), sqrt3/(1+sqrt3).
    a = [0.00, 0.02, 0.04, 0.00, 0.02]
    z = [0.01, 0.01, 0.01, 0.01, 0.03]
    w = inverse_volatility_weights(np.column_stack([a, z]), lookback=3, min_periods=2)
    r3 = np.sqrt(3.0)
    np.testing.assert_allclose(
        w, [[0.5, 0.5]] * 4 + [[1 / (1 + r3), r3 / (1 + r3)]], rtol=1e-12, atol=0.0
    )
    flat = inverse_volatility_weights(np.zeros((6, 2)), lookback=3, min_periods=2)
    assert (flat == 0.5).all()  # members flat all along: equal weights, never NaN


def test_a_lookback_below_min_periods_caps_min_periods() -> None:
    rets = np.random.default_rng(1).normal(0.0, 0.01, size=(30, 2))
    w = inverse_volatility_weights(rets, lookback=5)  # min_periods 20 > lookback 5
    assert (w[0] == 0.5).all()
    assert not np.allclose(w[5:], 0.5)
    assert np.isfinite(w).all()


def _members(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Three members' targets (with missing bars) and returns (with flat, zero-variance stretches
    and NaN returns)."""
    rng = np.random.default_rng(seed)
    targets = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(n, 3))
    targets[rng.random((n, 3)) < 0.1] = NAN
    rets = rng.normal(0.0, [0.01, 0.02, 0.005], size=(n, 3))
    rets[40:70, 1] = 0.0  # flat for longer than the look-back
    rets[100:104, 2] = NAN
    names = ["x", "y", "z"]
    return (
        {k: targets[:, j] for j, k in enumerate(names)},
        {k: rets[:, j] for j, k in enumerate(names)},
    )


def test_weights_and_ensemble_at_each_bar_use_no_later_bar() -> None:
    """Truncation invariance: computed from the bars up to t alone, the weights and the combined
    target at t equal those computed from the whole series, exactly, for every t."""
    n = 150
    targets, rets = _members(n, seed=11)
    matrix = np.column_stack(list(rets.values()))
    full_w = inverse_volatility_weights(matrix, lookback=10, min_periods=5)
    full = combine_members(targets, "weighted", member_returns=rets, lookback=10, min_periods=5)
    assert np.isnan(full.target).sum() < n  # the check compares decisions, not only NaN
    for t in range(n):
        w = inverse_volatility_weights(matrix[: t + 1], lookback=10, min_periods=5)
        assert np.array_equal(w[-1], full_w[t]), t
        part = combine_members(
            {k: v[: t + 1] for k, v in targets.items()},
            "weighted",
            member_returns={k: v[: t + 1] for k, v in rets.items()},
            lookback=10,
            min_periods=5,
        )
        assert np.array_equal(part.target[-1], full.target[t], equal_nan=True), t


def test_ensembles_are_deterministic() -> None:
    targets, rets = _members(300, seed=2)
    for method in ("weighted", "average", "voting"):
        a = combine_members(targets, method, member_returns=rets)
        b = combine_members(targets, method, member_returns=rets)
        assert np.array_equal(a.target, b.target, equal_nan=True)
        assert a.weights == b.weights


def test_given_weights_are_checked_and_reported_normalized() -> None:
    targets = {"a": np.array([1.0, NAN]), "b": np.array([-1.0, -1.0])}
    got = combine_members(targets, "weighted", weights={"a": 3.0, "b": 1.0})
    np.testing.assert_allclose(got.target, [0.5, -1.0])
    assert got.weights == {"a": 0.75, "b": 0.25}
    assert got.members_missing == {"a": 1, "b": 0}
    unnamed = combine_members(targets, "weighted", weights={"a": 1.0})
    assert np.isnan(unnamed.target[1])  # b weighs 0, a is missing: no decision
    with pytest.raises(ConfigError, match=r"weight of member b: -1.0 must be finite and >= 0"):
        combine_members(targets, "weighted", weights={"a": 1.0, "b": -1.0})
    with pytest.raises(ConfigError, match=r"unknown or failed members: \['c'\]"):
        combine_members(targets, "voting", weights={"c": 1.0})
    with pytest.raises(ConfigError, match="sum to zero"):
        combine_members(targets, "weighted", weights={"a": 0.0})
    with pytest.raises(ConfigError, match="at least one successful member"):
        combine_members({}, "average")
    with pytest.raises(ConfigError, match="need every member's returns"):
        combine_members(targets, "weighted", member_returns={"a": np.zeros(2)})


def test_voting_and_average_weigh_members_equally_without_given_weights() -> None:
    # long, long, short, flat, flat: old runner voting (sign of the sum of signs) said +1;
    # now flat (2) ties long (2) -> 0
    targets = {k: np.array([v]) for k, v in zip("abcde", [1.0, 0.5, -1.0, 0.0, 0.0], strict=True)}
    assert combine_members(targets, "voting").target.tolist() == [0.0]
    assert combine_members(targets, "average").target.tolist() == [0.1]
    weighted_vote = combine_members(
        targets, "voting", weights=dict.fromkeys("abcde", 1.0) | {"a": 2}
    )
    assert weighted_vote.target.tolist() == [1.0]


def test_runner_config_refuses_a_negative_weight_naming_the_member() -> None:
    from raytrader.strategies.runner import RunnerConfig

    with pytest.raises(ConfigError, match=r"runner\.weights\.rsi: Input should be greater than"):
        RunnerConfig.parse({"weights": {"rsi": -1.0, "macd": 1.0}}, where="runner")
    with pytest.raises(ConfigError, match=r"ensemble: Input should be 'weighted', 'average'"):
        RunnerConfig.parse({"ensemble": "majority"})
