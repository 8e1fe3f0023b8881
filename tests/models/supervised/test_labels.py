"""Fixed-horizon and triple-barrier labels: hand-checked examples (entry at the next open, as the
kernel fills, and close-to-close), look-ahead and truncation properties."""

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
from raytrader.models.supervised.labels import Entry

NAN = np.nan


def assert_labels(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_array_equal(actual, np.array(expected, dtype=np.float64))


def test_fixed_horizon_close_to_close_hand_example() -> None:
    close = [100.0, 101.0, 100.0, 100.0, 99.0, 102.0]
    lab = fixed_horizon_labels(close, 2, entry="close")
    # r_0 = 100/100-1 = 0, r_1 = 100/101-1 < 0, r_2 = 99/100-1 < 0, r_3 = 102/100-1 > 0
    assert_labels(lab.values, [0.0, -1.0, -1.0, 1.0, NAN, NAN])
    np.testing.assert_array_equal(lab.end, [2, 3, 4, 5, NO_END, NO_END])
    np.testing.assert_array_equal(lab.valid, [True, True, True, True, False, False])
    assert lab.kind == "fixed_horizon"
    assert lab.horizon == 2
    assert lab.entry == "close"


# opens differ from the previous close (gaps), so the two entries disagree
OPEN6 = [99.0, 100.0, 102.0, 99.0, 100.0, 103.0]
CLOSE6 = [100.0, 101.0, 100.0, 100.0, 99.0, 102.0]


def test_fixed_horizon_enters_at_the_next_open_by_default() -> None:
    lab = fixed_horizon_labels(CLOSE6, 2, open_=OPEN6)
    # a target decided at bar i's close fills at o[i+1] and, held 2 bars, exits at o[i+3]:
    # r_0 = o3/o1 - 1 = 99/100 - 1 < 0, r_1 = o4/o2 = 100/102 < 1, r_2 = o5/o3 = 103/99 > 1;
    # bars 3..5 have no exit open (o[6] is past the data)
    assert lab.entry == "open"
    assert_labels(lab.values, [-1.0, -1.0, 1.0, NAN, NAN, NAN])
    np.testing.assert_array_equal(lab.end, [3, 4, 5, NO_END, NO_END, NO_END])
    # close-to-close disagrees at bar 0 (c2/c0 = 1: 0) and bar 2 (c4/c2 < 1: -1)
    assert_labels(fixed_horizon_labels(CLOSE6, 2, entry="close").values[:3], [0.0, -1.0, -1.0])
    with pytest.raises(ConfigError, match="need the open series"):
        fixed_horizon_labels(CLOSE6, 2)
    with pytest.raises(ConfigError, match="5 opens for 6 closes"):
        fixed_horizon_labels(CLOSE6, 2, open_=OPEN6[:5])


def test_open_entry_labels_equal_what_the_kernel_earns() -> None:
    """Hold +1 for h bars from each labelled bar: the kernel's fill-to-fill return has the label's
    sign (costs off, next-open fills)."""
    from raytrader.backtest.engine import run_targets
    from raytrader.data.bars import Bars, make_frame
    from raytrader.sim import SimConfig

    rng = np.random.default_rng(3)
    n, h = 40, 3
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.005, n))  # gaps
    frame = make_frame(
        pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
        open_,
        np.maximum(open_, close) * 1.001,
        np.minimum(open_, close) * 0.999,
        close,
        np.full(n, 1000.0),
    )
    bars = Bars.from_frame(frame, symbol="GAP", timeframe="1h")
    lab = fixed_horizon_labels(close, h, open_=open_)
    free = SimConfig(commission=0.0, slippage_bps=0.0)
    for i in np.flatnonzero(lab.valid):
        targets = np.zeros(n)
        targets[i : i + h] = 1.0  # decided at closes i .. i+h-1, flat from the close of i+h
        out, _ = run_targets(bars, targets, free)
        # equity at the close of the exit bar i+1+h: the exit filled at its open
        growth = out.equity[i + 1 + h, 0] / free.initial_cash - 1.0
        assert growth == pytest.approx(open_[i + 1 + h] / open_[i + 1] - 1.0, rel=1e-9)
        assert np.sign(growth) == lab.values[i]
        assert lab.end[i] == i + 1 + h


def test_fixed_horizon_min_return_dead_zone() -> None:
    close = pd.Series([100.0, 100.5, 102.0, 99.0])
    lab = fixed_horizon_labels(close, 1, entry="close", min_return=0.01)
    # r = +0.5 % (inside ±1 %), +1.49 %, -2.94 %
    assert_labels(lab.values, [0.0, 1.0, -1.0, NAN])


def test_fixed_horizon_series_shorter_than_horizon_has_no_label() -> None:
    lab = fixed_horizon_labels([100.0, 101.0, 102.0], 3, entry="close")
    assert np.isnan(lab.values).all()
    assert (lab.end == NO_END).all()
    # entering at the next open needs one bar more: 3 bars hold no 2-bar trade either
    lab = fixed_horizon_labels([100.0, 101.0, 102.0], 2, open_=[100.0, 100.0, 101.0])
    assert np.isnan(lab.values).all()


# log returns of bars 1..8; vol_window=2 makes s_i = |ret_i - ret_{i-1}| / 2 for i >= 2
RETS = [0.01, -0.01, 0.005, 0.006, -0.02, 0.001, 0.001, 0.001]
CLOSE = 100.0 * np.exp(np.concatenate(([0.0], np.cumsum(RETS))))
# log closes (minus ln 100): 0, .01, 0, .005, .011, -.009, -.008, -.007, -.006


def test_rolling_volatility_hand_example() -> None:
    vol = rolling_volatility(CLOSE, 2)
    expected = [NAN, NAN, 0.01, 0.0075, 0.0005, 0.013, 0.0105, 0.0, 0.0]
    np.testing.assert_allclose(vol, expected, atol=1e-12)


def test_triple_barrier_close_to_close_hand_example() -> None:
    lab = triple_barrier_labels(CLOSE, 3, entry="close", upper=1.0, lower=1.0, vol_window=2)
    # i=2 (s=.01): path .005, .011 -> upper at j=4
    # i=3 (s=.0075): path .006, -.014 -> lower at j=5
    # i=4 (s=.0005): path -.020 -> lower at j=5
    # i=5 (s=.013): path .001, .002, .003 -> vertical at j=8, sign +
    # i=0, 1: no volatility yet; i=6..8: the last h bars
    assert_labels(lab.values, [NAN, NAN, 1.0, -1.0, -1.0, 1.0, NAN, NAN, NAN])
    np.testing.assert_array_equal(lab.end, [-1, -1, 4, 5, 5, 8, -1, -1, -1])
    assert lab.kind == "triple_barrier"


def test_triple_barrier_enters_at_the_next_open_by_default() -> None:
    # opens (log, minus ln 100): bar k opens at the previous log close + GAP[k]
    gap = [0.0, 0.0, 0.0, 0.004, 0.0, 0.0, 0.0, 0.0, 0.0]
    logc = np.log(CLOSE / 100.0)
    logo = np.concatenate(([0.0], logc[:-1])) + gap
    lab = triple_barrier_labels(
        CLOSE, 2, open_=100.0 * np.exp(logo), upper=1.0, lower=1.0, vol_window=2
    )
    # entry e_i = o[i+1]; path ln(c[j]/e_i) for j = i+1, i+2; vertical exit at o[i+3]
    # i=2 (s=.01):  e = o3 = .000 + .004: path .005-.004=.001, .011-.004=.007 -> no touch;
    #               vertical: o5 - o3 = .011 - .004 = .007 > 0 -> +1, end 2+1+2 = 5
    # i=3 (s=.0075): e = o4 = .005: path .011-.005=.006, -.009-.005=-.014 -> lower at j=5
    # i=4 (s=.0005): e = o5 = .011: path -.020 -> lower at j=5
    # i=5 (s=.013): e = o6 = -.009: path .001, .002 -> no touch; vertical o8 - o6 = .002 -> +1
    # i=6..8: no exit open within the data (i + 1 + h > 8)
    assert_labels(lab.values, [NAN, NAN, 1.0, -1.0, -1.0, 1.0, NAN, NAN, NAN])
    np.testing.assert_array_equal(lab.end, [-1, -1, 5, 5, 5, 8, -1, -1, -1])
    # close-to-close at i=2 (entry c2 = 0): .005, .011 -> the upper barrier (.01) at j=4
    close = triple_barrier_labels(CLOSE, 2, entry="close", upper=1.0, lower=1.0, vol_window=2)
    assert (close.values[2], close.end[2]) == (1.0, 4)


def test_triple_barrier_vertical_zero_and_asymmetric_barriers() -> None:
    zero = triple_barrier_labels(CLOSE, 3, entry="close", vol_window=2, vertical="zero")
    assert_labels(zero.values, [NAN, NAN, 1.0, -1.0, -1.0, 0.0, NAN, NAN, NAN])
    # upper = 2 x .01 at i=2: .011 falls short; the lower (.01) is not reached by -.009 either,
    # so the vertical barrier at j=5 decides: sign(-.009) = -1
    wide = triple_barrier_labels(CLOSE, 3, entry="close", upper=2.0, lower=1.0, vol_window=2)
    assert wide.values[2] == -1.0
    assert wide.end[2] == 5


def test_triple_barrier_zero_volatility_needs_a_strict_move() -> None:
    close = [100.0, 100.0, 100.0, 100.0, 101.0, 100.0]
    lab = triple_barrier_labels(close, 2, entry="close", vol_window=2)
    # s_2 = s_3 = 0: an unchanged close touches no barrier, the rise at bar 4 touches the upper one
    assert_labels(lab.values[:4], [NAN, NAN, 1.0, 1.0])
    np.testing.assert_array_equal(lab.end[:4], [-1, -1, 4, 4])


def random_close(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))


def random_open(close: np.ndarray, seed: int) -> np.ndarray:
    """Opens that gap away from the previous close."""
    rng = np.random.default_rng(seed + 7)
    prev = np.concatenate(([close[0]], close[:-1]))
    out: np.ndarray = prev * np.exp(rng.normal(0.0, 0.004, len(close)))
    return out


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(30, 120),
    h=st.integers(1, 8),
    kind=st.sampled_from(["fixed", "barrier"]),
    entry=st.sampled_from(["open", "close"]),
    data=st.data(),
)
def test_labels_look_only_at_bars_up_to_the_horizon(
    seed: int, n: int, h: int, kind: str, entry: Entry, data: st.DataObject
) -> None:
    w = 5
    shift = 1 if entry == "open" else 0  # the exit fills at o[i+1+h], or the close c[i+h]

    def labels(c: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab = (
            fixed_horizon_labels(c, h, open_=o, entry=entry)
            if kind == "fixed"
            else triple_barrier_labels(
                c, h, open_=o, entry=entry, upper=0.8, lower=1.2, vol_window=w
            )
        )
        return lab.values, lab.end

    close = random_close(seed, n)
    opens = random_open(close, seed)
    values, end = labels(close, opens)
    last = n - h - shift  # bars 0 .. last-1 can have a label
    # the last h (+1 entering at the next open) bars never have a label; every label ends
    # within i+1 .. i+h+shift
    assert np.isnan(values[last:]).all()
    assert (end[last:] == NO_END).all()
    has = ~np.isnan(values)
    idx = np.flatnonzero(has)
    assert ((end[idx] >= idx + 1) & (end[idx] <= idx + h + shift)).all()
    if kind == "fixed":
        assert has[:last].all()
        assert (end[idx] == idx + h + shift).all()
    else:
        assert has[w:last].all()
        assert not has[:w].any()

    # truncation invariance: cutting bars off the end only removes the labels at the end
    m = data.draw(st.integers(h + shift + 1, n), label="m")
    vt, et = labels(close[:m], opens[:m])
    keep = m - h - shift
    np.testing.assert_array_equal(vt[:keep], values[:keep])
    np.testing.assert_array_equal(et[:keep], end[:keep])
    assert np.isnan(vt[keep:]).all()

    t = data.draw(st.integers(0, last - 1), label="t")
    rng = np.random.default_rng(seed + 1)
    # bars after t + h + shift never matter (neither opens nor closes)
    later_c, later_o = close.copy(), opens.copy()
    tail = n - t - h - shift - 1
    later_c[t + h + shift + 1 :] *= np.exp(rng.normal(0.0, 0.05, tail))
    later_o[t + h + shift + 1 :] *= np.exp(rng.normal(0.0, 0.05, tail))
    v2, e2 = labels(later_c, later_o)
    np.testing.assert_array_equal(v2[: t + 1], values[: t + 1])
    np.testing.assert_array_equal(e2[: t + 1], end[: t + 1])
    # bars before t matter only through the triple barrier's volatility window (bars t-w .. t)
    first = t if kind == "fixed" else t - w
    earlier_c, earlier_o = close.copy(), opens.copy()
    if first > 0:
        earlier_c[:first] *= np.exp(rng.normal(0.0, 0.05, first))
        earlier_o[:first] *= np.exp(rng.normal(0.0, 0.05, first))
        v3, e3 = labels(earlier_c, earlier_o)
        assert v3[t] == values[t] or (np.isnan(v3[t]) and np.isnan(values[t]))
        assert e3[t] == end[t]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 10), mult=st.floats(0.2, 3.0))
def test_triple_barrier_label_matches_its_end_bar(seed: int, h: int, mult: float) -> None:
    close = random_close(seed, 150)
    lab = triple_barrier_labels(close, h, entry="close", upper=mult, lower=mult, vol_window=10)
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


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 10), mult=st.floats(0.2, 3.0))
def test_open_entry_triple_barrier_matches_its_end_bar(seed: int, h: int, mult: float) -> None:
    close = random_close(seed, 150)
    opens = random_open(close, seed)
    lab = triple_barrier_labels(close, h, open_=opens, upper=mult, lower=mult, vol_window=10)
    vol = rolling_volatility(close, 10)
    logc, logo = np.log(close), np.log(opens)
    for i in np.flatnonzero(lab.valid):
        j = int(lab.end[i])
        entry = logo[i + 1]  # the fill of the order decided at bar i's close
        path = logc[i + 1 : min(j, i + h) + 1] - entry
        if j == i + 1 + h:  # the vertical barrier: exit at the open after h bars held
            assert (np.abs(path) < mult * vol[i]).all()
            assert np.sign(logo[j] - entry) == lab.values[i]
        else:  # a barrier touched at the close of bar j
            assert i + 1 <= j <= i + h
            assert (np.abs(path[:-1]) < mult * vol[i]).all()
            assert abs(path[-1]) >= mult * vol[i]
            assert np.sign(path[-1]) == lab.values[i]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fixed_horizon_labels([100.0, 101.0], 0), "horizon must be an integer >= 1"),
        (lambda: fixed_horizon_labels([100.0, -1.0, 2.0], 1), r"close\[1\] = -1.0"),
        (lambda: fixed_horizon_labels([100.0, np.nan], 1), "finite positive closes"),
        (lambda: fixed_horizon_labels(np.ones((2, 2)), 1), "1-D close series"),
        (lambda: fixed_horizon_labels([1.0, 2.0], 1, open_=[1.0, 0.0]), r"open\[1\] = 0.0"),
        (lambda: fixed_horizon_labels([1.0, 2.0], 1, entry="mid"), "entry must be"),  # type: ignore[arg-type]  # a bad value on purpose
        (lambda: fixed_horizon_labels([1.0, 2.0], 1, min_return=-0.1), "min_return"),
        (lambda: triple_barrier_labels([1.0, 2.0], 1, upper=0.0), "upper multiple"),
        (lambda: triple_barrier_labels([1.0, 2.0], 1, entry="close", vol_window=1), "vol_window"),
        (lambda: triple_barrier_labels([1.0, 2.0], 1, vertical="up"), "vertical"),
    ],
)
def test_bad_label_input_is_a_config_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()
