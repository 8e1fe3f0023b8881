"""Fixed-horizon and triple-barrier labels: hand-checked examples and look-ahead properties."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raytrader.errors import ConfigError
from raytrader.models.supervised import (
    NO_END,
    fixed_horizon_labels,
    rolling_volatility,
    triple_barrier_labels,
)

NAN = np.nan


def assert_labels(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_array_equal(actual, np.array(expected, dtype=np.float64))


def test_fixed_horizon_hand_example() -> None:
    close = [100.0, 101.0, 100.0, 100.0, 99.0, 102.0]
    lab = fixed_horizon_labels(close, 2)
    # r_0 = 100/100-1 = 0, r_1 = 100/101-1 < 0, r_2 = 99/100-1 < 0, r_3 = 102/100-1 > 0
    assert_labels(lab.values, [0.0, -1.0, -1.0, 1.0, NAN, NAN])
    np.testing.assert_array_equal(lab.end, [2, 3, 4, 5, NO_END, NO_END])
    np.testing.assert_array_equal(lab.valid, [True, True, True, True, False, False])
    assert lab.kind == "fixed_horizon"
    assert lab.horizon == 2


def test_fixed_horizon_min_return_dead_zone() -> None:
    close = pd.Series([100.0, 100.5, 102.0, 99.0])
    lab = fixed_horizon_labels(close, 1, min_return=0.01)
    # r = +0.5 % (inside ±1 %), +1.49 %, -2.94 %
    assert_labels(lab.values, [0.0, 1.0, -1.0, NAN])


def test_fixed_horizon_series_shorter_than_horizon_has_no_label() -> None:
    lab = fixed_horizon_labels([100.0, 101.0, 102.0], 3)
    assert np.isnan(lab.values).all()
    assert (lab.end == NO_END).all()


# log returns of bars 1..8; vol_window=2 makes s_i = |ret_i - ret_{i-1}| / 2 for i >= 2
RETS = [0.01, -0.01, 0.005, 0.006, -0.02, 0.001, 0.001, 0.001]
CLOSE = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(RETS))))
# log closes (minus ln 100): 0, .01, 0, .005, .011, -.009, -.008, -.007, -.006


def test_rolling_volatility_hand_example() -> None:
    vol = rolling_volatility(CLOSE, 2)
    expected = [NAN, NAN, 0.01, 0.0075, 0.0005, 0.013, 0.0105, 0.0, 0.0]
    np.testing.assert_allclose(vol, expected, atol=1e-12)


def test_triple_barrier_hand_example() -> None:
    lab = triple_barrier_labels(CLOSE, 3, upper=1.0, lower=1.0, vol_window=2)
    # i=2 (s=.01): path .005, .011 -> upper at j=4
    # i=3 (s=.0075): path .006, -.014 -> lower at j=5
    # i=4 (s=.0005): path -.020 -> lower at j=5
    # i=5 (s=.013): path .001, .002, .003 -> vertical at j=8, sign +
    # i=0, 1: no volatility yet; i=6..8: the last h bars
    assert_labels(lab.values, [NAN, NAN, 1.0, -1.0, -1.0, 1.0, NAN, NAN, NAN])
    np.testing.assert_array_equal(lab.end, [-1, -1, 4, 5, 5, 8, -1, -1, -1])
    assert lab.kind == "triple_barrier"


def test_triple_barrier_vertical_zero_and_asymmetric_barriers() -> None:
    zero = triple_barrier_labels(CLOSE, 3, vol_window=2, vertical="zero")
    assert_labels(zero.values, [NAN, NAN, 1.0, -1.0, -1.0, 0.0, NAN, NAN, NAN])
    # upper = 2 x .01 at i=2: .011 falls short; the lower (.01) is not reached by -.009 either,
    # so the vertical barrier at j=5 decides: sign(-.009) = -1
    wide = triple_barrier_labels(CLOSE, 3, upper=2.0, lower=1.0, vol_window=2)
    assert wide.values[2] == -1.0
    assert wide.end[2] == 5


def test_triple_barrier_zero_volatility_needs_a_strict_move() -> None:
    close = [100.0, 100.0, 100.0, 100.0, 101.0, 100.0]
    lab = triple_barrier_labels(close, 2, vol_window=2)
    # s_2 = s_3 = 0: an unchanged close touches no barrier, the rise at bar 4 touches the upper one
    assert_labels(lab.values[:4], [NAN, NAN, 1.0, 1.0])
    np.testing.assert_array_equal(lab.end[:4], [-1, -1, 4, 4])


def random_close(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(30, 120),
    h=st.integers(1, 8),
    kind=st.sampled_from(["fixed", "barrier"]),
    data=st.data(),
)
def test_labels_look_only_at_bars_up_to_the_horizon(
    seed: int, n: int, h: int, kind: str, data: st.DataObject
) -> None:
    w = 5

    def labels(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab = (
            fixed_horizon_labels(c, h)
            if kind == "fixed"
            else triple_barrier_labels(c, h, upper=0.8, lower=1.2, vol_window=w)
        )
        return lab.values, lab.end

    close = random_close(seed, n)
    values, end = labels(close)
    # the last h bars never have a label; every label ends within i+1 .. i+h
    assert np.isnan(values[n - h :]).all()
    assert (end[n - h :] == NO_END).all()
    has = ~np.isnan(values)
    idx = np.flatnonzero(has)
    assert ((end[idx] >= idx + 1) & (end[idx] <= idx + h)).all()
    if kind == "fixed":
        assert has[: n - h].all()
    else:
        assert has[w : n - h].all()
        assert not has[:w].any()

    t = data.draw(st.integers(0, n - h - 1), label="t")
    rng = np.random.default_rng(seed + 1)
    # bars after t + h never matter
    later = close.copy()
    later[t + h + 1 :] *= np.exp(rng.normal(0.0, 0.05, n - t - h - 1))
    v2, e2 = labels(later)
    np.testing.assert_array_equal(v2[: t + 1], values[: t + 1])
    np.testing.assert_array_equal(e2[: t + 1], end[: t + 1])
    # bars before t matter only through the triple barrier's volatility window (bars t-w .. t)
    first = t if kind == "fixed" else t - w
    earlier = close.copy()
    if first > 0:
        earlier[:first] *= np.exp(rng.normal(0.0, 0.05, first))
        v3, e3 = labels(earlier)
        assert v3[t] == values[t] or (np.isnan(v3[t]) and np.isnan(values[t]))
        assert e3[t] == end[t]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 10), mult=st.floats(0.2, 3.0))
def test_triple_barrier_label_matches_its_end_bar(seed: int, h: int, mult: float) -> None:
    close = random_close(seed, 150)
    lab = triple_barrier_labels(close, h, upper=mult, lower=mult, vol_window=10)
    vol = rolling_volatility(close, 10)
    logc = np.log(close)
    for i in np.flatnonzero(lab.valid):
        j = int(lab.end[i])
        path = logc[i + 1 : j + 1] - logc[i]
        move = logc[j] - logc[i]
        assert np.sign(move) == lab.values[i]
        # no barrier before the end bar
        assert (np.abs(path[:-1]) < mult * vol[i]).all()
        if j < i + h:  # a barrier touch
            assert abs(move) >= mult * vol[i]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fixed_horizon_labels([100.0, 101.0], 0), "horizon must be an integer >= 1"),
        (lambda: fixed_horizon_labels([100.0, -1.0, 2.0], 1), r"close\[1\] = -1.0"),
        (lambda: fixed_horizon_labels([100.0, np.nan], 1), "finite positive closes"),
        (lambda: fixed_horizon_labels(np.ones((2, 2)), 1), "1-D close series"),
        (lambda: fixed_horizon_labels([1.0, 2.0], 1, min_return=-0.1), "min_return"),
        (lambda: triple_barrier_labels([1.0, 2.0], 1, upper=0.0), "upper multiple"),
        (lambda: triple_barrier_labels([1.0, 2.0], 1, vol_window=1), "vol_window"),
        (lambda: triple_barrier_labels([1.0, 2.0], 1, vertical="up"), "vertical"),
    ],
)
def test_bad_label_input_is_a_config_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()
