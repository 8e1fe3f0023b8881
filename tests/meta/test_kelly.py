"""Fractional Kelly sizing: it only shrinks the members' position, follows κ·μ/σ², is capped, and
gives no decision on a missing input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raytrader.errors import ConfigError
from raytrader.meta.kelly import EwmaVariance, KellyConfig, kelly_size

unit = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
edges = st.floats(min_value=-0.1, max_value=0.1, allow_nan=False)
variances = st.floats(min_value=1e-8, max_value=0.01, allow_nan=False)


@given(combined=unit, edge=edges, variance=variances)
def test_kelly_never_flips_or_grows_the_members_position(
    combined: float, edge: float, variance: float
) -> None:
    sized = kelly_size(combined, edge, variance, KellyConfig())
    assert abs(sized.position) <= abs(combined)
    assert sized.position * combined >= 0
    assert 0.0 <= sized.kelly <= 1.0


def test_the_size_is_the_fraction_of_kelly_capped() -> None:
    config = KellyConfig(fraction=0.5, max_position=1.0)
    # edge 0.1 % a bar on a 1 % volatility: full Kelly 10x, half 5x, capped at 1
    assert kelly_size(0.8, 0.001, 1e-4, config).position == 0.8
    # edge 0.01 %: half Kelly 0.5 bounds a full position
    sized = kelly_size(-1.0, -0.0001, 1e-4, config)
    assert sized.position == pytest.approx(-0.5)
    assert sized.bound
    # a predicted edge against the members' direction sizes to 0
    assert kelly_size(0.7, -0.001, 1e-4, config).position == 0.0
    assert kelly_size(0.0, 0.001, 1e-4, config).position == 0.0


def test_a_missing_input_is_no_decision() -> None:
    assert math.isnan(kelly_size(0.5, math.nan, 1e-4, KellyConfig()).position)
    assert math.isnan(kelly_size(0.5, 0.001, math.nan, KellyConfig()).position)
    with pytest.raises(ConfigError, match="fraction"):
        KellyConfig.parse({"fraction": 2.0})


def test_the_ewma_variance_follows_squared_returns_with_its_halflife() -> None:
    v = EwmaVariance(halflife=1.0)
    assert math.isnan(v.value)
    assert v.update(0.02) == pytest.approx(4e-4)
    assert v.update(0.0) == pytest.approx(2e-4)  # half-life one bar: half of the way
    assert v.update(math.nan) == pytest.approx(2e-4)  # a missing return changes nothing
