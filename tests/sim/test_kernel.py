"""Simulation semantics on hand-crafted prices: fills, costs, trades, stops, units, sizing, limits.

Every expected number is computed by hand from the rules in the module docstring of
:mod:`raytrader.sim.kernel` (fill at the next open / this close, adverse slippage, commission on traded
notional, ``units = f x equity / (fill_price x (1 + commission))``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raytrader.errors import ConfigError
from raytrader.sim import (
    AllIn,
    FixedFraction,
    KellyCapped,
    SimConfig,
    VolTarget,
    simulate,
    trades_frame,
)
from raytrader.sim import kernel as K
from tests.conftest import ohlc, random_targets

CASH = 10_000.0
PPY = 252.0


def cfg(**kw: object) -> SimConfig:
    """A frictionless config unless costs are given."""
    base: dict[str, object] = {"initial_cash": CASH, "commission": 0.0, "slippage_bps": 0.0}
    base.update(kw)
    return SimConfig.model_validate(base)


def prices(
    o: list[float],
    c: list[float] | None = None,
    h: list[float] | None = None,
    lo: list[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    oa = np.asarray(o, dtype=np.float64)
    ca = oa.copy() if c is None else np.asarray(c, dtype=np.float64)
    ha = np.maximum(oa, ca) if h is None else np.asarray(h, dtype=np.float64)
    la = np.minimum(oa, ca) if lo is None else np.asarray(lo, dtype=np.float64)
    return oa, ha, la, ca


def run(
    px: tuple[np.ndarray, ...],
    targets: list[float] | np.ndarray,
    config: SimConfig,
    ppy: float = PPY,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(equity, units, trades frame) of one column."""
    out = simulate(*px, np.asarray(targets, dtype=np.float64), config, ppy)
    index = pd.date_range("2024-01-01", periods=len(px[0]), freq="D", tz="UTC")
    return out.equity[:, 0], out.positions[:, 0], trades_frame(out.trades, index)


# ---- fills -------------------------------------------------------------------------------------------

O5 = [100.0, 110.0, 120.0, 130.0, 140.0]
C5 = [105.0, 115.0, 125.0, 135.0, 145.0]


def test_signal_at_close_fills_at_next_open_with_adverse_buy_slippage() -> None:
    bps = 10.0
    _, units, trades = run(prices(O5, C5), [0, 1, 1, 1, 1], cfg(slippage_bps=bps))
    assert units[0] == 0.0
    assert units[1] == 0.0
    # sized at the slipped fill price: units = equity / (open x (1 + slippage))
    assert units[2] == pytest.approx(CASH / (O5[2] * (1 + bps / 1e4)), rel=1e-14)
    (t,) = trades.itertuples()
    assert t.entry_bar == 2
    assert t.entry_price == pytest.approx(O5[2] * (1 + bps / 1e4), rel=1e-15)
    assert t.side == "long"
    assert t.exit_reason == "open"


def test_short_signal_fills_at_next_open_with_adverse_sell_slippage() -> None:
    bps = 25.0
    _, units, trades = run(prices(O5, C5), [0, -1, -1, -1, -1], cfg(slippage_bps=bps))
    assert units[1] == 0.0
    assert units[2] == pytest.approx(-CASH / (O5[2] * (1 - bps / 1e4)), rel=1e-14)
    (t,) = trades.itertuples()
    assert t.entry_bar == 2
    assert t.entry_price == pytest.approx(O5[2] * (1 - bps / 1e4), rel=1e-15)
    assert t.side == "short"


def test_exit_signal_sells_at_next_open_with_adverse_slippage() -> None:
    bps = 10.0
    _, units, trades = run(prices(O5, C5), [1, 1, 0, 0, 0], cfg(slippage_bps=bps))
    (t,) = trades.itertuples()
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (1, 3, "signal")
    assert t.entry_price == pytest.approx(O5[1] * (1 + bps / 1e4), rel=1e-15)
    assert t.exit_price == pytest.approx(O5[3] * (1 - bps / 1e4), rel=1e-15)
    assert units[3] == 0.0
    assert units[2] > 0.0


def test_fill_close_fills_at_the_signal_bars_close() -> None:
    bps = 10.0
    _, units, trades = run(prices(O5, C5), [0, 1, 1, 0, 0], cfg(slippage_bps=bps, fill="close"))
    assert units[0] == 0.0
    assert units[1] > 0.0
    assert units[3] == 0.0
    (t,) = trades.itertuples()
    assert (t.entry_bar, t.exit_bar) == (1, 3)
    assert t.entry_price == pytest.approx(C5[1] * (1 + bps / 1e4), rel=1e-15)
    assert t.exit_price == pytest.approx(C5[3] * (1 - bps / 1e4), rel=1e-15)


def test_order_on_last_bar_never_fills() -> None:
    eq, units, trades = run(prices(O5, C5), [0, 0, 0, 0, 1], cfg())
    assert len(trades) == 0
    assert (units == 0).all()
    assert (eq == CASH).all()


# ---- commission and trade accounting --------------------------------------------------------------

O6 = [100.0, 100.0, 125.0, 130.0, 110.0, 120.0]
C6 = [100.0, 101.0, 126.0, 128.0, 112.0, 118.0]


def test_commission_charged_on_traded_notional_of_every_fill_round_trip() -> None:
    comm = 0.001
    eq, units, trades = run(prices(O6, C6), [0, 1, 1, 0, 0, 0], cfg(commission=comm))
    u = CASH / (O6[2] * (1 + comm))
    fee_buy = u * O6[2] * comm
    cash_after_buy = CASH - u * O6[2] - fee_buy
    fee_sell = u * O6[4] * comm
    cash_after_sell = cash_after_buy + u * O6[4] - fee_sell
    assert units[2] == pytest.approx(u, rel=1e-14)
    assert eq[2] == pytest.approx(cash_after_buy + u * C6[2], rel=1e-12)
    assert eq[4] == pytest.approx(cash_after_sell, rel=1e-12)
    assert eq[5] == eq[4]
    (t,) = trades.itertuples()
    assert t.commission == pytest.approx(fee_buy + fee_sell, rel=1e-12)
    assert t.pnl == pytest.approx((O6[4] - O6[2]) * u - fee_buy - fee_sell, rel=1e-12)
    assert t.pnl == pytest.approx(eq[-1] - CASH, rel=1e-12)
    assert t.exit_reason == "signal"


def test_reversal_long_to_short_closes_one_trade_and_opens_another_on_the_same_bar() -> None:
    comm = 0.001
    eq, units, trades = run(prices(O6, C6), [0, 1, 1, -1, -1, -1], cfg(commission=comm))
    u1 = CASH / (O6[2] * (1 + comm))
    fee1 = u1 * O6[2] * comm
    cash1 = CASH - u1 * O6[2] - fee1
    equity_at_open = cash1 + u1 * O6[4]
    u2 = -equity_at_open / (O6[4] * (1 + comm))
    delta = u2 - u1
    fee = abs(delta) * O6[4] * comm
    fee_close = fee * u1 / abs(delta)
    assert len(trades) == 2
    first, second = trades.itertuples()
    assert (first.side, first.entry_bar, first.exit_bar, first.exit_reason) == (
        "long",
        2,
        4,
        "signal",
    )
    assert first.pnl == pytest.approx((O6[4] - O6[2]) * u1 - fee1 - fee_close, rel=1e-12)
    assert first.commission == pytest.approx(fee1 + fee_close, rel=1e-12)
    assert (second.side, second.entry_bar, second.exit_reason) == ("short", 4, "open")
    assert second.entry_price == O6[4]
    assert second.units == pytest.approx(u2, rel=1e-12)
    assert second.commission == pytest.approx(fee - fee_close, rel=1e-12)
    assert units[4] == pytest.approx(u2, rel=1e-12)
    assert first.pnl + second.pnl == pytest.approx(eq[-1] - CASH, rel=1e-12)


def test_scale_in_same_direction_moves_average_price_without_a_new_trade() -> None:
    eq, units, trades = run(prices(O6, C6), [0, 0.5, 0.5, 1, 1, 1], cfg())
    u1 = 0.5 * CASH / O6[2]
    cash1 = CASH - u1 * O6[2]
    u2 = (cash1 + u1 * O6[4]) / O6[4]
    avg = (O6[2] * u1 + O6[4] * (u2 - u1)) / u2
    (t,) = trades.itertuples()
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (2, 5, "open")
    assert t.entry_price == pytest.approx(avg, rel=1e-14)
    assert t.units == pytest.approx(u2, rel=1e-14)
    assert t.max_units == pytest.approx(u2, rel=1e-14)
    assert units[3] == pytest.approx(u1, rel=1e-14)
    assert units[4] == pytest.approx(u2, rel=1e-14)
    assert t.pnl == pytest.approx(eq[-1] - CASH, rel=1e-12)


def test_scale_out_realizes_pnl_without_a_new_trade() -> None:
    o = [100.0, 100.0, 125.0, 130.0, 110.0, 120.0, 120.0]
    eq, units, trades = run(prices(o), [0, 1, 1, 0.5, 0.5, 0, 0], cfg())
    # 80 units at 125; at 110 equity is 8800 -> keep 40 (realize -600); sell the rest at 120 (-200)
    assert units[2] == pytest.approx(80.0, rel=1e-14)
    assert units[4] == pytest.approx(40.0, rel=1e-14)
    assert eq[4] == pytest.approx(CASH - 80 * 15, rel=1e-14)
    (t,) = trades.itertuples()
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (2, 6, "signal")
    assert t.entry_price == 125.0
    assert t.units == pytest.approx(40.0, rel=1e-14)
    assert t.max_units == pytest.approx(80.0, rel=1e-14)
    assert t.pnl == pytest.approx(-800.0, rel=1e-12)
    assert trades["return"].iloc[0] == pytest.approx(-800.0 / (125.0 * 80.0), rel=1e-12)
    assert eq[-1] == pytest.approx(CASH - 800.0, rel=1e-14)


# ---- stops --------------------------------------------------------------------------------------------

# bar 0: decide; bar 1: entry at the open (100); bar 2: the test bar; bars 3-5: quiet
QUIET = (100.0, 100.5, 99.5, 100.0)


def stop_bars(bar2: tuple[float, float, float, float], n_after: int = 3) -> tuple[np.ndarray, ...]:
    rows = [QUIET, QUIET, bar2] + [(bar2[3], bar2[3] + 0.1, bar2[3] - 0.1, bar2[3])] * n_after
    o, h, lo, c = (np.array(col) for col in zip(*rows, strict=True))
    return o, h, lo, c


STOP_CASES = [
    # side, bar 2 (open, high, low, close), expected reason, expected fill before slippage
    pytest.param(1, (99.0, 100.0, 94.0, 96.0), "stop_loss", "level_sl", id="long-sl-intrabar"),
    pytest.param(1, (90.0, 92.0, 88.0, 91.0), "stop_loss", 90.0, id="long-sl-gap-fills-at-open"),
    pytest.param(1, (101.0, 106.0, 100.0, 104.0), "take_profit", "level_tp", id="long-tp-intrabar"),
    pytest.param(
        1, (108.0, 110.0, 107.0, 109.0), "take_profit", 108.0, id="long-tp-gap-fills-at-open"
    ),
    pytest.param(
        1, (100.0, 106.0, 94.0, 100.0), "stop_loss", "level_sl", id="long-both-stop-loss-wins"
    ),
    pytest.param(-1, (101.0, 106.0, 100.0, 104.0), "stop_loss", "level_sl", id="short-sl-intrabar"),
    pytest.param(
        -1, (110.0, 112.0, 108.0, 111.0), "stop_loss", 110.0, id="short-sl-gap-fills-at-open"
    ),
    pytest.param(-1, (99.0, 100.0, 94.0, 96.0), "take_profit", "level_tp", id="short-tp-intrabar"),
    pytest.param(
        -1, (90.0, 92.0, 88.0, 91.0), "take_profit", 90.0, id="short-tp-gap-fills-at-open"
    ),
    pytest.param(
        -1, (100.0, 106.0, 94.0, 100.0), "stop_loss", "level_sl", id="short-both-stop-loss-wins"
    ),
]


@pytest.mark.parametrize(("side", "bar2", "reason", "expected"), STOP_CASES)
def test_stop_exits_at_level_or_gap_open_with_slippage(
    side: int, bar2: tuple[float, float, float, float], reason: str, expected: float | str
) -> None:
    sl, tp, bps, comm = 0.05, 0.05, 5.0, 0.001
    slip = bps / 1e4
    eq, units, trades = run(
        stop_bars(bar2),
        [side] * 6,
        cfg(stop_loss=sl, take_profit=tp, slippage_bps=bps, commission=comm),
    )
    (t,) = trades.itertuples()
    entry = 100.0 * (1 + side * slip)
    assert t.entry_price == pytest.approx(entry, rel=1e-15)
    if expected == "level_sl":
        level = entry * (1 - side * sl)
    elif expected == "level_tp":
        level = entry * (1 + side * tp)
    else:
        level = float(expected)
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (1, 2, reason)
    assert t.exit_price == pytest.approx(level * (1 - side * slip), rel=1e-14)
    u = t.units
    fee_in = abs(u) * entry * comm
    fee_out = abs(u) * t.exit_price * comm
    assert t.commission == pytest.approx(fee_in + fee_out, rel=1e-12)
    assert t.pnl == pytest.approx((t.exit_price - entry) * u - fee_in - fee_out, rel=1e-10)
    # flat after the stop although the target is unchanged
    assert (units[2:] == 0).all()
    assert (eq[2:] == eq[2]).all()


def test_position_stays_flat_after_stop_until_target_changes() -> None:
    o, h, lo, c = stop_bars((99.0, 100.0, 94.0, 96.0), n_after=8)
    targets = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
    _, units, trades = run((o, h, lo, c), targets, cfg(stop_loss=0.05))
    assert (units[2:7] == 0).all()
    assert len(trades) == 2
    first, second = trades.itertuples()
    assert first.exit_reason == "stop_loss"
    # the target goes to 0 at bar 5 and back to 1 at bar 6 -> a new entry at bar 7's open
    assert (second.entry_bar, second.exit_reason) == (7, "open")
    assert (units[7:] > 0).all()


def test_stop_exit_then_reversal_target_opens_opposite_trade() -> None:
    o, h, lo, c = stop_bars((99.0, 100.0, 94.0, 96.0), n_after=4)
    _, units, trades = run((o, h, lo, c), [1, 1, 1, 1, -1, -1, -1], cfg(stop_loss=0.05))
    assert list(trades.exit_reason) == ["stop_loss", "open"]
    assert list(trades.side) == ["long", "short"]
    assert trades.entry_bar.iloc[1] == 5
    assert units[5] < 0


def test_stop_checked_on_the_entry_bar_after_the_open_fill() -> None:
    o = [100.0, 100.0, 100.0, 100.0]
    h = [100.0, 100.5, 100.0, 100.0]
    lo = [100.0, 94.0, 100.0, 100.0]
    _, units, trades = run(
        (np.array(o), np.array(h), np.array(lo), np.array(o)), [1, 1, 1, 1], cfg(stop_loss=0.05)
    )
    (t,) = trades.itertuples()
    assert (t.entry_bar, t.exit_bar, t.exit_reason, t.exit_price) == (1, 1, "stop_loss", 95.0)
    assert (units[1:] == 0).all()


def test_close_fill_position_is_not_stopped_by_the_entry_bars_own_range() -> None:
    o = [100.0, 100.0, 100.0, 100.0]
    h = [100.0, 100.0, 100.0, 100.0]
    lo = [80.0, 99.0, 94.0, 100.0]  # the entry bar's own low is far below the stop; bar 2 hits 95
    _, _, trades = run(
        (np.array(o), np.array(h), np.array(lo), np.array(o)),
        [1, 1, 1, 1],
        cfg(stop_loss=0.05, fill="close"),
    )
    (t,) = trades.itertuples()
    assert (t.entry_bar, t.exit_bar, t.exit_reason, t.exit_price) == (0, 2, "stop_loss", 95.0)


# ---- units --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_whole_units_truncate_toward_zero(side: float) -> None:
    comm = 0.001
    px = prices([33.0] * 4)
    _, units, _ = run(px, [side] * 4, cfg(units="whole", commission=comm))
    exact = side * CASH / (33.0 * (1 + comm))
    assert units[1] == math.trunc(exact)
    assert abs(units[1]) < abs(exact)
    assert units[1] == side * 302.0


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_fractional_units_are_not_truncated(side: float) -> None:
    comm = 0.001
    _, units, _ = run(prices([33.0] * 4), [side] * 4, cfg(commission=comm))
    assert units[1] == pytest.approx(side * CASH / (33.0 * (1 + comm)), rel=1e-15)
    assert units[1] != math.trunc(units[1])


# ---- sizing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_fixed_fraction_holds_half_the_units_of_all_in(side: float) -> None:
    px = prices(O6, C6)
    targets = [0, side, side, side, side, side]
    _, all_in, _ = run(px, targets, cfg(commission=0.001, slippage_bps=3.0, sizing=AllIn()))
    _, half, _ = run(
        px, targets, cfg(commission=0.001, slippage_bps=3.0, sizing=FixedFraction(fraction=0.5))
    )
    assert all_in[2] != 0.0
    np.testing.assert_array_equal(half, 0.5 * all_in)


def _vol_frac(
    close: np.ndarray, lookback: int, annual_vol: float, max_lev: float, ppy: float, at: int
) -> float:
    r = close[at - lookback + 1 : at + 1] / close[at - lookback : at] - 1.0
    realized = np.std(r, ddof=1) * np.sqrt(ppy)
    return min(max_lev, annual_vol / realized)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_vol_target_waits_for_lookback_returns_then_sizes_by_realized_vol(goog, fill: str) -> None:
    o, h, lo, c = (a[:120] for a in ohlc(goog))
    lookback, annual_vol, max_lev, comm = 20, 0.15, 5.0, 0.001
    sizing = VolTarget(lookback=lookback, annual_vol=annual_vol, max_leverage=max_lev)
    _, units, trades = run(
        (o, h, lo, c), np.ones(len(c)), cfg(sizing=sizing, fill=fill, commission=comm)
    )
    # the first decision is at the close of bar `lookback`, when `lookback` returns are known
    frac = _vol_frac(c, lookback, annual_vol, max_lev, PPY, lookback)
    assert frac < max_lev
    fill_bar = lookback + 1 if fill == "next_open" else lookback
    ref = o[fill_bar] if fill == "next_open" else c[fill_bar]
    assert (units[:fill_bar] == 0).all()
    assert units[fill_bar] == pytest.approx(frac * CASH / (ref * (1 + comm)), rel=1e-12)
    assert trades.entry_bar.iloc[0] == fill_bar
    assert len(trades) == 1  # no rebalancing while the target is unchanged


def test_vol_target_capped_at_max_leverage(goog) -> None:
    o, h, lo, c = (a[:60] for a in ohlc(goog))
    sizing = VolTarget(lookback=10, annual_vol=5.0, max_leverage=0.5)
    _, units, _ = run((o, h, lo, c), np.ones(len(c)), cfg(sizing=sizing))
    assert _vol_frac(c, 10, 5.0, 0.5, PPY, 10) == 0.5
    assert units[11] == pytest.approx(0.5 * CASH / o[11], rel=1e-14)


def test_vol_target_size_changes_only_with_the_target(goog) -> None:
    o, h, lo, c = (a[:200] for a in ohlc(goog))
    lookback = 15
    targets = np.zeros(len(c))
    targets[50:] = 1.0
    targets[120:] = -1.0
    _, units, _ = run(
        (o, h, lo, c), targets, cfg(sizing=VolTarget(lookback=lookback, max_leverage=3.0))
    )
    f1 = _vol_frac(c, lookback, 0.15, 3.0, PPY, 50)
    assert units[51] == pytest.approx(f1 * CASH / o[51], rel=1e-12)
    equity_at_open = CASH + units[51] * (o[121] - o[51])
    f2 = _vol_frac(c, lookback, 0.15, 3.0, PPY, 120)
    assert units[121] == pytest.approx(-f2 * equity_at_open / o[121], rel=1e-12)


def _falling(n: int = 80, seed: int = 5) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    c = 100.0 * np.cumprod(1.0 - 0.004 + 0.01 * rng.standard_normal(n))
    return prices(list(c))


def test_kelly_negative_edge_takes_no_position() -> None:
    px = _falling()
    c = px[3]
    assert (c[1:21] / c[:20] - 1.0).mean() < 0.0  # the window the decision sees has a negative edge
    _, units, trades = run(px, np.ones(len(c)), cfg(sizing=KellyCapped(lookback=20)))
    assert len(trades) == 0
    assert (units == 0).all()


def test_kelly_positive_edge_sizes_by_mean_over_variance() -> None:
    o, h, lo, c = _falling()
    kf, cap, lookback = 0.01, 1.0, 20
    _, units, _ = run(
        (o, h, lo, c),
        -np.ones(len(c)),
        cfg(sizing=KellyCapped(lookback=lookback, kelly_fraction=kf, cap=cap)),
    )
    r = c[1 : lookback + 1] / c[:lookback] - 1.0
    k = min(max(kf * -r.mean() / r.var(ddof=1), 0.0), cap)
    assert 0.0 < k < cap
    assert (units[: lookback + 1] == 0).all()
    assert units[lookback + 1] == pytest.approx(-k * CASH / o[lookback + 1], rel=1e-10)


# ---- target handling ----------------------------------------------------------------------------------


def test_allow_short_false_clips_short_targets_to_flat() -> None:
    o = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]
    _, units, trades = run(prices(o), [0, -1, -1, 1, 1, -1, -1, 0], cfg(allow_short=False))
    assert (units >= 0).all()
    assert (units[:4] == 0).all()
    (t,) = trades.itertuples()
    assert (t.side, t.entry_bar, t.exit_bar, t.exit_reason) == ("long", 4, 6, "signal")


@pytest.mark.parametrize("bad", [1.5, -1.0001, np.inf, -np.inf])
def test_target_outside_unit_interval_raises_config_error_naming_the_bar(bad: float) -> None:
    targets = np.array([0.0, 0.5, 1.0, bad, 0.0])
    with pytest.raises(ConfigError, match=r"at bar 3 \(column 0\) is outside \[-1, 1\]"):
        simulate(*prices(O5), targets, cfg(), PPY)


def test_nan_target_keeps_the_previous_target() -> None:
    px = prices(
        [100.0, 101.0, 99.0, 102.0, 104.0, 103.0, 105.0],
        [101.0, 100.0, 101.0, 103.0, 103.0, 104.0, 106.0],
    )
    with_nan = run(px, [np.nan, 1, np.nan, np.nan, -1, np.nan, 0], cfg(commission=0.001))
    explicit = run(px, [0, 1, 1, 1, -1, -1, 0], cfg(commission=0.001))
    np.testing.assert_array_equal(with_nan[0], explicit[0])
    np.testing.assert_array_equal(with_nan[1], explicit[1])
    pd.testing.assert_frame_equal(with_nan[2], explicit[2])
    assert len(explicit[2]) == 2


def test_unchanged_target_does_not_rebalance_price_drift() -> None:
    o = [100.0, 100.0, 150.0, 200.0, 50.0]
    _, units, trades = run(prices(o), [1, 1, 1, 1, 1], cfg())
    assert (units[1:] == units[1]).all()
    assert len(trades) == 1


# ---- liquidation ----------------------------------------------------------------------------------


def test_all_in_short_on_rising_series_is_liquidated_and_stops_trading() -> None:
    c = [100.0 * 1.25**i for i in range(12)]
    o = [c[0], *c[:-1]]
    targets = [-1] * 7 + [1, 1, 0, -1, -1]
    eq, units, trades = run(prices(o, c), targets, cfg(commission=0.001, slippage_bps=5.0))
    last = trades.iloc[-1]
    assert last.exit_reason == "liquidation"
    assert list(trades.exit_reason).count("liquidation") == 1
    bust = int(last.exit_bar)
    assert bust < 7  # the account busts before the target ever turns long
    assert len(trades) == 1  # nothing opens after the liquidation
    assert (units[bust:] == 0).all()
    assert (eq[bust:] == eq[bust]).all()
    assert eq[bust - 1] > 0.0
    # marked at the bust bar's close, the short would be worth <= 0
    assert eq[bust - 1] + units[bust - 1] * (c[bust] - c[bust - 1]) <= 0.0
    assert last.exit_price == pytest.approx(c[bust] * (1 + 5.0 / 1e4), rel=1e-14)
    assert trades.pnl.sum() == pytest.approx(eq[-1] - CASH, rel=1e-9)


# ---- accounting identity ---------------------------------------------------------------------------

SIZINGS = [
    AllIn(),
    FixedFraction(fraction=0.7),
    VolTarget(lookback=10, max_leverage=2.0),
    KellyCapped(lookback=15, kelly_fraction=0.5, cap=1.5),
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**31 - 1),
    fill=st.sampled_from(["next_open", "close"]),
    units=st.sampled_from(["fractional", "whole"]),
    sizing=st.sampled_from(SIZINGS),
    stop_loss=st.one_of(st.none(), st.floats(0.005, 0.2)),
    take_profit=st.one_of(st.none(), st.floats(0.005, 0.5)),
    commission=st.sampled_from([0.0, 0.0005, 0.002]),
    slippage_bps=st.sampled_from([0.0, 1.0, 20.0]),
    allow_short=st.booleans(),
    p_change=st.sampled_from([0.02, 0.2, 0.8]),
)
def test_sum_of_trade_pnl_equals_final_equity_minus_initial_cash(
    goog,
    seed: int,
    fill: str,
    units: str,
    sizing: object,
    stop_loss: float | None,
    take_profit: float | None,
    commission: float,
    slippage_bps: float,
    allow_short: bool,
    p_change: float,
) -> None:
    config = SimConfig(
        fill=fill,
        units=units,
        sizing=sizing,
        stop_loss=stop_loss,
        take_profit=take_profit,
        commission=commission,
        slippage_bps=slippage_bps,
        allow_short=allow_short,
    )
    targets = random_targets(len(goog), seed, p_change=p_change)
    out = simulate(*ohlc(goog), targets, config, goog.periods_per_year)
    eq = out.equity[:, 0]
    pnl = out.trades[:, K.T_PNL]
    np.testing.assert_allclose(
        pnl.sum(), eq[-1] - config.initial_cash, rtol=1e-9, atol=1e-9 * config.initial_cash
    )
    # record invariants: entries before exits, time-ordered, the open trade (if any) last
    tr = out.trades
    assert (tr[:, K.T_ENTRY_BAR] <= tr[:, K.T_EXIT_BAR]).all()
    assert (np.diff(tr[:, K.T_EXIT_BAR]) >= 0).all()
    reasons = tr[:, K.T_REASON]
    assert (reasons[:-1] != K.REASON_OPEN).all()
    held = out.positions[-1, 0]
    if held != 0.0:
        assert reasons[-1] == K.REASON_OPEN
        assert tr[-1, K.T_UNITS] == held
    if not allow_short:
        assert (out.positions >= 0).all()
    if units == "whole":
        assert (out.positions == np.trunc(out.positions)).all()
