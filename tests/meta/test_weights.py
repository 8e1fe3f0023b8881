"""Weights from scores: the constraints hold for any scores and preset (property tests), the
temperature's two limits are equal weight and pick-the-best, infeasible settings are named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raytrader.errors import ConfigError
from raytrader.meta.weights import (
    PRESETS,
    WeightConfig,
    preset,
    smooth,
    softmax_probabilities,
    target_weights,
)

TOL = 1e-9

scores = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=12,
)
temperatures = st.one_of(st.floats(min_value=1e-6, max_value=1e6), st.just(float("inf")))


@settings(max_examples=400, deadline=None)
@given(scores=scores, name=st.sampled_from(sorted(PRESETS)), temperature=temperatures)
def test_weights_meet_every_constraint_for_any_scores(
    scores: list[float], name: str, temperature: float
) -> None:
    config = preset(name, temperature=temperature)
    if len(scores) < config.min_active or len(scores) * config.floor > 1:
        with pytest.raises(ConfigError):
            target_weights(np.array(scores), config)
        return
    w = target_weights(np.array(scores), config)
    assert abs(w.weights.sum() - 1.0) < TOL
    assert (w.weights >= 0).all()
    assert (w.weights <= config.cap + TOL).all()
    assert (w.weights[w.active] >= config.floor - TOL).all()
    assert (w.weights[~w.active] == 0).all()
    assert w.active.sum() >= config.min_active
    # a higher score never gets less weight
    order = np.argsort(-np.array(scores), kind="stable")
    assert (np.diff(w.weights[order]) <= TOL).all()


def test_the_designs_example() -> None:
    """../shared/META.md 4.3: scores [1, .8, .1, -.5, -1], cap .4, 4 active, floor .05."""
    config = WeightConfig(cap=0.4, min_active=4, floor=0.05, temperature=0.05)
    w = target_weights(np.array([1.0, 0.8, 0.1, -0.5, -1.0]), config)
    np.testing.assert_allclose(w.weights, [0.4, 0.4, 0.15, 0.05, 0.0], atol=1e-9)
    assert w.capped.tolist() == [True, True, False, False, False]
    assert w.floored.tolist() == [False, False, False, True, False]
    assert w.active.tolist() == [True, True, True, True, False]


def test_the_temperatures_limits_are_equal_weight_and_the_best_member() -> None:
    s = np.array([0.3, -0.1, 0.9, 0.2])
    equal = target_weights(s, WeightConfig(temperature=float("inf"), cap=1.0, min_active=4))
    np.testing.assert_array_equal(equal.weights, [0.25] * 4)
    best = target_weights(s, WeightConfig(temperature=1e-6, cap=1.0, min_active=1))
    np.testing.assert_allclose(best.weights, [0, 0, 1, 0], atol=1e-12)
    assert softmax_probabilities(np.array([5.0, 5.0]), 1.0).tolist() == [0.5, 0.5]


@pytest.mark.parametrize(
    ("settings_", "members", "named"),
    [
        ({"cap": 0.4, "min_active": 2}, 5, "cap 0.4 x min_active 2 < 1"),
        ({"floor": 0.3, "cap": 0.6, "min_active": 2}, 4, "floor 0.3 x 4 members > 1"),
        ({"min_active": 4, "cap": 0.5}, 3, "min_active 4 needs at least that many members"),
        ({"floor": 0.5, "cap": 0.4, "min_active": 3}, 2, "min_active 3"),
    ],
)
def test_an_infeasible_setting_names_its_constraint(
    settings_: dict[str, float], members: int, named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        target_weights(np.zeros(members), WeightConfig(**settings_))


def test_presets_are_the_designs_and_overrides_are_validated() -> None:
    conservative = preset("conservative")
    assert (conservative.cap, conservative.min_active, conservative.floor) == (0.4, 4, 0.05)
    assert preset("research").kelly is None
    kelly = conservative.kelly
    assert kelly is not None
    assert kelly.fraction == 0.25
    assert preset("balanced", temperature=0.5).temperature == 0.5
    with pytest.raises(ConfigError, match="temperature"):
        preset("balanced", temperature=-1)
    with pytest.raises(ConfigError, match="caps: Extra inputs"):
        preset("balanced", caps=0.5)
    with pytest.raises(ConfigError, match="unknown weight preset 'bold'"):
        preset("bold")
    with pytest.raises(ConfigError, match="finite"):
        target_weights(np.array([1.0, np.nan, 0.0]), preset("balanced"))


def test_smoothing_moves_toward_the_target_and_keeps_the_sum_and_cap() -> None:
    config = preset("balanced")
    first = target_weights(np.array([3.0, 1.0, 0.0, -1.0]), config).weights
    second = target_weights(np.array([-1.0, 0.0, 1.0, 3.0]), config).weights
    assert smooth(None, first, 0.2).tolist() == first.tolist()
    w = smooth(first, second, 0.2)
    np.testing.assert_allclose(w, 0.8 * first + 0.2 * second)
    assert abs(w.sum() - 1) < TOL
    assert (w <= config.cap + TOL).all()
    with pytest.raises(ConfigError, match="3 members, the target 4"):
        smooth(first[:3], second, 0.2)
