"""Simulation semantics on hand-crafted prices: fills, costs, trades, stops, units, sizing, limits,
margin (initial margin, liquidation, borrow and financing).

Every expected number is computed by hand from the rules in the module docstring of
:mod:`raytrader.sim.kernel` (fill at the next open / this close, adverse slippage, commission on traded
notional, ``units = f x equity / (fill_price x (1 + commission))``, the liquidation price
``p* = -cash / (units x (1 - side x maintenance))``, carry per bar = annual rate / ppy).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raytrader.backtest.metrics import compute_metrics
from raytrader.errors import ConfigError
from raytrader.sim import (
    AllIn,
    FixedFraction,
    KellyCapped,
    MarginConfig,
    SimConfig,
    Simulator,
    VolTarget,
    simulate,
    trades_frame,
)
from raytrader.sim import kernel as K
from tests.conftest import ohlc, random_targets

CASH = 10_000.0
PPY = 252.0


def cfg(**kw: object) -> SimConfig:
    """A frictionless config (no costs, no margin account) unless costs or a margin are given."""
    base: dict[str, object] = {
        "initial_cash": CASH,
        "commission": 0.0,
        "slippage_bps": 0.0,
        "margin": None,
    }
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


# ---- liquidation without a margin account ------------------------------------------------------------


def test_without_margin_liquidation_waits_for_equity_at_or_below_zero_at_a_close() -> None:
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


# ---- margin account ------------------------------------------------------------------------------------


def mcfg(margin: dict[str, float] | None = None, **kw: object) -> SimConfig:
    """Frictionless but for a margin account: Reg T / FINRA rates, no borrow or financing costs
    unless given."""
    m: dict[str, float] = {"borrow_rate": 0.0, "financing_rate": 0.0}
    m.update(margin or {})
    return cfg(margin=MarginConfig(**m), **kw)


def bars(rows: list[tuple[float, float, float, float]]) -> tuple[np.ndarray, ...]:
    """(open, high, low, close) arrays from rows of (open, high, low, close)."""
    o, h, lo, c = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return o, h, lo, c


FLAT = (100.0, 100.0, 100.0, 100.0)


def test_default_margin_account_is_reg_t_and_finra_with_retail_carry_rates() -> None:
    m = SimConfig().margin
    assert m is not None
    assert (m.initial_margin, m.maintenance_margin_long, m.maintenance_margin_short) == (
        0.5,
        0.25,
        0.30,
    )
    assert (m.borrow_rate, m.financing_rate) == (0.003, 0.05)


def test_liquidation_price_leaves_equity_exactly_at_maintenance() -> None:
    for units, cash, mm in [(200.0, -10_000.0, 0.25), (-200.0, 30_000.0, 0.30)]:
        p = K.liquidation_price(units, cash, 0.25, 0.30)
        assert cash + units * p == pytest.approx(mm * abs(units) * p, rel=1e-14)
    assert p == pytest.approx(30_000.0 / (200.0 * 1.3), rel=1e-15)
    assert math.isnan(K.liquidation_price(100.0, 0.0, 0.25, 0.30))  # an unlevered long: none


@pytest.mark.parametrize(
    ("targets", "entry_bar", "fraction"),
    [
        # the target goes to 0 at bar 4 and back to 1 at bar 5: a new entry at bar 6's open
        pytest.param([1, 1, 1, 1, 0, 1, 1, 1], 6, 1.5, id="target-0-then-1"),
        # the target goes to 0.5 at bar 4: a new entry of 0.5 x 1.5 at bar 5's open
        pytest.param([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5], 5, 0.75, id="target-0.5"),
    ],
)
def test_leveraged_long_is_margin_called_inside_the_bar_keeps_its_equity_and_trades_again(
    targets: list[float], entry_bar: int, fraction: float
) -> None:
    """A margin call is no bust: the position is closed at p* (reason ``liquidation``), the account
    keeps the maintenance margin less the exit's costs, stays flat while the target stays 1 (like
    after a stop exit) and re-enters from that equity when the target changes."""
    comm, bps = 0.001, 5.0
    slip = bps / 1e4
    at_60 = (60.0, 60.0, 60.0, 60.0)
    px = bars([FLAT, FLAT, (90.0, 91.0, 40.0, 60.0), at_60, at_60, at_60, at_60, at_60])
    config = mcfg(commission=comm, slippage_bps=bps, sizing=FixedFraction(fraction=1.5))
    eq, units, trades = run(px, targets, config)
    entry = 100.0 * (1 + slip)
    u = 1.5 * CASH / (entry * (1 + comm))
    cash = CASH - u * entry * (1 + comm)  # -5000: 15 000 bought on 10 000 of equity
    p_star = -cash / (u * (1 - 0.25))  # equity = 25% of the position's value there
    assert 40.0 < p_star < 90.0  # not at the open, inside the bar
    exit_price = p_star * (1 - slip)
    after = cash + u * exit_price - u * exit_price * comm
    # what is left: the 25% maintenance less the liquidation's slippage and commission
    assert after == pytest.approx(u * p_star * (0.25 - slip - (1 - slip) * comm), rel=1e-12)
    assert 1_500.0 < after < 2_000.0

    first, second = trades.itertuples()  # the liquidation, then the new trade
    assert (first.side, first.entry_bar, first.exit_bar, first.exit_reason) == (
        "long",
        1,
        2,
        "liquidation",
    )
    assert first.exit_price == pytest.approx(exit_price, rel=1e-12)
    assert first.units == pytest.approx(u, rel=1e-14)
    assert first.pnl == pytest.approx(after - CASH, rel=1e-12)
    assert eq[2] == pytest.approx(after, rel=1e-12)
    # flat on what the margin call left while the target stays 1 (and at 0): no order, no cost
    assert (units[2:entry_bar] == 0.0).all()
    assert (eq[2:entry_bar] == eq[2]).all()
    # the target changed: a new long from that equity at the next open (60, slippage against)
    entry2 = 60.0 * (1 + slip)
    u2 = fraction * eq[2] / (entry2 * (1 + comm))
    assert (second.side, second.entry_bar, second.exit_bar, second.exit_reason) == (
        "long",
        entry_bar,
        7,
        "open",
    )
    assert second.entry_price == pytest.approx(entry2, rel=1e-15)
    assert second.units == pytest.approx(u2, rel=1e-14)
    np.testing.assert_allclose(units[entry_bar:], u2, rtol=1e-14)
    fee2 = u2 * entry2 * comm
    assert second.pnl == pytest.approx((60.0 - entry2) * u2 - fee2, rel=1e-12)
    np.testing.assert_allclose(eq[entry_bar:], eq[2] + second.pnl, rtol=1e-14)
    assert trades.pnl.sum() == pytest.approx(eq[-1] - CASH, rel=1e-12)
    # not bust: the metrics read an ordinary curve (wealth never 0)
    m = compute_metrics(eq, CASH, PPY)
    assert m["total_return"][0] == pytest.approx(eq[-1] / CASH - 1.0, rel=1e-14)
    assert m["max_drawdown"][0] > -1.0


@pytest.mark.parametrize(
    ("side", "gap_open", "equity_after"),
    [
        # 2x long at 100: 200 units, cash -10 000, p* = 66.67; a gap to 60 leaves 2 000
        pytest.param(1, 60.0, -10_000.0 + 200 * 60.0, id="long-gap-equity-positive"),
        # a gap to 40 goes through zero equity (50): the account owes 2 000
        pytest.param(1, 40.0, -10_000.0 + 200 * 40.0, id="long-gap-through-zero"),
        # 2x short at 100: -200 units, cash 30 000, p* = 115.38
        pytest.param(-1, 130.0, 30_000.0 - 200 * 130.0, id="short-gap-equity-positive"),
        pytest.param(-1, 160.0, 30_000.0 - 200 * 160.0, id="short-gap-through-zero"),
    ],
)
def test_gap_through_maintenance_is_liquidated_at_the_open(
    side: int, gap_open: float, equity_after: float
) -> None:
    gap = (gap_open, gap_open + 1.0, gap_open - 1.0, gap_open)
    px = bars([FLAT, FLAT, gap, FLAT, FLAT])
    config = mcfg(sizing=FixedFraction(fraction=2.0))
    eq, units, trades = run(px, [side] * 5, config)
    assert units[1] == side * 200.0
    (t,) = trades.itertuples()
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (2, "liquidation", gap_open)
    assert t.pnl == pytest.approx(equity_after - CASH, rel=1e-14)
    np.testing.assert_allclose(eq[2:], equity_after, rtol=1e-14)
    assert (units[2:] == 0).all()
    # only a gap can leave equity below zero; the metrics read that account as bust: -100%
    m = compute_metrics(eq, CASH, PPY)
    assert m["total_return"][0] == (max(equity_after, 0.0) / CASH - 1.0)
    assert m["final_equity"][0] == pytest.approx(equity_after, rel=1e-14)
    assert m["total_return"][0] >= -1.0


def test_margin_call_at_the_open_comes_before_the_pending_order() -> None:
    # long 2x from bar 1; at bar 1's close the target turns short; bar 2 gaps through p* = 66.67
    px = bars([FLAT, FLAT, (60.0, 61.0, 59.0, 60.0), FLAT, FLAT, FLAT, FLAT])
    targets = [1, -1, -1, -1, 0, -1, -1]
    eq, units, trades = run(px, targets, mcfg(sizing=FixedFraction(fraction=2.0)))
    first, second = trades.itertuples()
    assert (first.side, first.exit_bar, first.exit_reason, first.exit_price) == (
        "long",
        2,
        "liquidation",
        60.0,
    )
    # the short pending at bar 2's open is cancelled and does not open while the target stays -1
    assert (units[2:6] == 0).all()
    np.testing.assert_allclose(eq[2:6], 2_000.0, rtol=1e-14)
    # the target changes (0 at bar 4, -1 at bar 5): a 2x short of the 2 000 left at bar 6's open
    assert (second.side, second.entry_bar, second.exit_reason) == ("short", 6, "open")
    assert units[6] == pytest.approx(-2.0 * 2_000.0 / 100.0, rel=1e-14)


@pytest.mark.parametrize(
    ("gap_open", "bust"),
    [
        # 2x long at 100: 200 units, cash -10 000, p* = 66.67; zero equity at 50
        pytest.param(40.0, True, id="through-zero-equity-bust"),
        pytest.param(60.0, False, id="equity-left-trades-on"),
    ],
)
def test_gap_liquidation_is_a_bust_only_when_it_leaves_equity_at_or_below_zero(
    gap_open: float, bust: bool
) -> None:
    px = bars([FLAT, FLAT, (gap_open, gap_open + 1.0, gap_open - 1.0, gap_open), *[FLAT] * 5])
    targets = [1, 1, 1, 0, 1, -1, 0.5, 1]
    config = mcfg(sizing=FixedFraction(fraction=2.0))
    eq, units, trades = run(px, targets, config)
    left = -10_000.0 + 200.0 * gap_open  # -2 000 or +2 000
    liq = trades.iloc[0]
    assert (liq.exit_bar, liq.exit_reason, liq.exit_price) == (2, "liquidation", gap_open)
    assert eq[2] == pytest.approx(left, rel=1e-14)
    # the step path's state: bust (S_BUST) only through zero equity
    sim = Simulator(config, PPY)
    for i in range(len(targets)):
        sim.step(px[0][i], px[1][i], px[2][i], px[3][i], targets[i])
    assert sim.states[0, K.S_BUST] == float(bust)
    if bust:
        # the target changes at bars 3-7, yet the account never trades again; a debt of 2 000
        assert len(trades) == 1
        assert (units[2:] == 0.0).all()
        assert (eq[2:] == eq[2]).all()
        assert sim.equity[0] == eq[-1]
        m = compute_metrics(eq, CASH, PPY)
        assert m["total_return"][0] == -1.0
        assert m["final_equity"][0] == eq[-1] < 0.0
    else:
        # 0 at bar 3, 1 at bar 4: long 2x of the 2 000 at bar 5; then -1 (bar 6) and 0.5 (bar 7)
        assert list(trades.exit_reason) == ["liquidation", "signal", "signal", "open"]
        np.testing.assert_allclose(units[2:], [0, 0, 0, 40, -40, 20], rtol=1e-14)
        np.testing.assert_allclose(eq[2:], 2_000.0, rtol=1e-14)  # flat prices, no costs


@pytest.mark.parametrize(
    ("side", "stop_loss", "reason", "price"),
    [
        # 2x long at 100: p* = 66.67; a stop at 80 is reached first on the way down to 50
        pytest.param(1, 0.2, "stop_loss", 80.0, id="long-stop-nearer-the-open"),
        pytest.param(1, 0.4, "liquidation", 10_000.0 / 150.0, id="long-p-star-nearer"),
        # 2x short at 100: p* = 115.38; the high is 130
        pytest.param(-1, 0.1, "stop_loss", 110.0, id="short-stop-nearer-the-open"),
        pytest.param(-1, 0.2, "liquidation", 30_000.0 / 260.0, id="short-p-star-nearer"),
    ],
)
def test_stop_loss_and_liquidation_inside_one_bar_the_level_nearer_the_open_wins(
    side: int, stop_loss: float, reason: str, price: float
) -> None:
    px = bars([FLAT, FLAT, (100.0, 130.0, 50.0, 100.0), FLAT, FLAT, FLAT])
    config = mcfg(sizing=FixedFraction(fraction=2.0), stop_loss=stop_loss)
    eq, units, trades = run(px, [side, side, side, 0, side, side], config)
    first = trades.iloc[0]
    assert (first.exit_bar, first.exit_reason) == (2, reason)
    assert first.exit_price == pytest.approx(price, rel=1e-14)
    # either exit leaves equity and the account trades on: flat while the target is unchanged,
    # then (the target changed at bars 3-4) a new 2x entry at bar 5 from what the exit left
    assert (units[2:5] == 0).all()
    assert eq[4] == pytest.approx(CASH - 200.0 * abs(100.0 - price), rel=1e-14)
    assert units[5] == pytest.approx(side * 2.0 * eq[4] / 100.0, rel=1e-14)
    assert list(trades.exit_reason) == [reason, "open"]


def test_unlevered_long_is_never_margin_called_and_a_1x_short_is_at_plus_54_percent() -> None:
    crash = [100.0, 100.0, 50.0, 10.0, 2.0, 1.0]
    eq, units, trades = run(prices(crash), [1] * 6, mcfg(units="whole"))
    assert (units[1:] == 100.0).all()
    assert list(trades.exit_reason) == ["open"]
    assert eq[-1] == 100.0
    # 1x short: -100 units, cash 20 000, p* = 20 000 / (100 x 1.3) = 153.85
    rise = [(100.0, 100.0, 100.0, 100.0)] * 2 + [(150.0, 160.0, 150.0, 155.0)] * 2
    eq, units, trades = run(bars(rise), [-1] * 4, mcfg())
    (t,) = trades.itertuples()
    assert (t.exit_bar, t.exit_reason) == (2, "liquidation")
    assert t.exit_price == pytest.approx(20_000.0 / 130.0, rel=1e-14)
    assert eq[-1] == pytest.approx(0.3 * 100 * 20_000.0 / 130.0, rel=1e-12)


def test_short_pays_borrow_fee_every_bar_on_its_notional_at_the_close() -> None:
    # borrow_rate 0.252 over 252 bars a year: 0.1% of |units| x close per bar
    o = [100.0, 100.0, 110.0, 90.0, 100.0, 100.0]
    config = mcfg({"borrow_rate": 0.252, "financing_rate": 0.9})  # financing: longs only
    eq, units, trades = run(prices(o), [-1, -1, -1, -1, 0, 0], config)
    assert (units[1:5] == -100.0).all()
    fees = [0.001 * 100 * c for c in o[1:5]]  # bars 1-4 end short; bar 5 covers at the open
    assert fees == pytest.approx([10.0, 11.0, 9.0, 10.0], rel=1e-14)
    for i in range(1, 5):
        assert eq[i] == pytest.approx(20_000.0 - sum(fees[:i]) - 100 * o[i], rel=1e-14)
    (t,) = trades.itertuples()
    assert t.carry == pytest.approx(40.0, rel=1e-14)
    assert t.pnl == pytest.approx(-40.0, rel=1e-14)  # entered and covered at 100
    assert t.commission == 0.0
    assert eq[-1] == pytest.approx(CASH - 40.0, rel=1e-14)


def test_leveraged_long_pays_financing_on_the_borrowed_cash_every_bar() -> None:
    # 2x long at 100: 200 units, 10 000 borrowed; 0.1% a bar on the (growing) debt
    config = mcfg({"financing_rate": 0.252, "borrow_rate": 0.9}, sizing=FixedFraction(fraction=2.0))
    eq, units, trades = run(prices([100.0] * 6), [1] * 6, config)
    assert (units[1:] == 200.0).all()
    charges = [10.0 * 1.001**k for k in range(5)]  # the interest is added to the debt
    for i in range(1, 6):
        assert eq[i] == pytest.approx(CASH - sum(charges[:i]), rel=1e-13)
    (t,) = trades.itertuples()
    assert t.carry == pytest.approx(sum(charges), rel=1e-13)
    assert t.pnl == pytest.approx(eq[-1] - CASH, rel=1e-13)


def test_unlevered_long_pays_no_financing() -> None:
    config = mcfg({"financing_rate": 0.252}, units="whole", commission=0.001)
    eq, _, trades = run(prices([33.0] * 6), [1] * 6, config)
    (t,) = trades.itertuples()
    assert t.carry == 0.0
    assert eq[-1] == eq[1]


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_initial_margin_cuts_an_order_to_the_largest_allowed_size(side: float) -> None:
    comm = 0.001
    px = prices([100.0] * 4)
    big = FixedFraction(fraction=5.0)
    _, units, _ = run(px, [side] * 4, mcfg(commission=comm, sizing=big))
    # f is capped at (1 + c) / (IM + c): units = equity / (price x (IM + c))
    assert units[1] == pytest.approx(side * CASH / (100.0 * (0.5 + comm)), rel=1e-14)
    # from flat, equity after the commission is exactly the initial margin of the position
    fee = abs(units[1]) * 100.0 * comm
    assert CASH - fee == pytest.approx(0.5 * abs(units[1]) * 100.0, rel=1e-14)
    # without a margin account 5x goes through; with initial margin 1.0 it is cut to 1x
    _, free, _ = run(px, [side] * 4, cfg(commission=comm, sizing=big))
    assert free[1] == pytest.approx(side * 5.0 * CASH / (100.0 * (1 + comm)), rel=1e-14)
    _, cash_account, _ = run(px, [side] * 4, mcfg({"initial_margin": 1.0}, sizing=big))
    assert cash_account[1] == side * CASH / 100.0


@pytest.mark.parametrize("fraction", [1.0, 1.9])
def test_orders_within_initial_margin_are_not_cut(fraction: float) -> None:
    px = prices([100.0] * 4)
    sizing = FixedFraction(fraction=fraction)
    _, with_margin, _ = run(px, [1] * 4, mcfg(commission=0.001, sizing=sizing))
    _, without, _ = run(px, [1] * 4, cfg(commission=0.001, sizing=sizing))
    np.testing.assert_array_equal(with_margin, without)


def _gapless(bars_: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The same bars with every open at the previous close: prices move only inside bars."""
    o, h, lo, c = bars_
    o = np.concatenate([[o[0]], c[:-1]])
    return o, np.maximum(h, o), np.minimum(lo, o), c


@pytest.mark.parametrize(
    "sizing", [FixedFraction(fraction=2.0), VolTarget(annual_vol=2.0, max_leverage=10.0)]
)
def test_without_gaps_a_margin_account_never_has_negative_equity(goog, sizing: object) -> None:
    px = _gapless(ohlc(goog))
    targets = random_targets(len(goog), seed=21, k=40, p_change=0.05)
    config = SimConfig(sizing=sizing)  # default margin account, costs and rates
    out = simulate(*px, targets, config, goog.periods_per_year)
    liquidated = out.trades[out.trades[:, K.T_REASON] == K.REASON_LIQUIDATION]
    assert len(liquidated) >= 5  # the property is exercised
    assert (out.equity >= 0.0).all()
    # and liquidations leave about the 25% / 30% maintenance (less costs), not zero
    assert (out.equity[-1, np.unique(liquidated[:, K.T_COL]).astype(int)] > 0.0).all()


def test_margin_config_is_strict_and_round_trips() -> None:
    with pytest.raises(
        ConfigError, match=r"maintenance_margin_short \(0.3\) must be below initial_margin"
    ):
        SimConfig.parse({"margin": {"initial_margin": 0.3}})
    with pytest.raises(ConfigError, match="must exceed a liquidation's slippage"):
        SimConfig.parse({"commission": 0.09, "margin": {"maintenance_margin_long": 0.05}})
    with pytest.raises(ConfigError, match=r"margin\.leverage"):
        SimConfig.parse({"margin": {"leverage": 3}})
    with pytest.raises(ConfigError, match="borrow_rate"):
        SimConfig.parse({"margin": {"borrow_rate": -0.01}})
    for config in (SimConfig(), SimConfig(margin=None), mcfg({"borrow_rate": 0.1})):
        assert SimConfig.model_validate_json(config.model_dump_json()) == config
    assert SimConfig.parse({"margin": None}).margin is None


# ---- accounting identity ---------------------------------------------------------------------------

SIZINGS = [
    AllIn(),
    FixedFraction(fraction=0.7),
    FixedFraction(fraction=3.0),
    VolTarget(lookback=10, max_leverage=2.0),
    KellyCapped(lookback=15, kelly_fraction=0.5, cap=1.5),
]
MARGINS = [
    None,
    MarginConfig(),
    # thin margins and costly carry: many liquidations and large borrow / financing charges
    MarginConfig(
        initial_margin=0.3,
        maintenance_margin_long=0.1,
        maintenance_margin_short=0.12,
        borrow_rate=2.0,
        financing_rate=3.0,
    ),
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
    margin=st.sampled_from(MARGINS),
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
    margin: MarginConfig | None,
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
        margin=margin,
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
    if margin is None or margin.borrow_rate == margin.financing_rate == 0.0:
        assert (tr[:, K.T_CARRY] == 0.0).all()
    assert (tr[:, K.T_CARRY] >= 0.0).all()
