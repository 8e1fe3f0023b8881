"""The two paths into the kernel agree exactly: whole-series ``simulate`` vs the bar-by-bar ``Simulator``,
many columns vs one column at a time (serial and parallel code paths), and repeated runs — with and
without the margin account (liquidations, borrow fees, financing)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.sim import (
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

# thin margins and costly carry: liquidations inside bars and at gaps, large carry charges
THIN_MARGIN = MarginConfig(
    initial_margin=0.25,
    maintenance_margin_long=0.1,
    maintenance_margin_short=0.12,
    borrow_rate=1.0,
    financing_rate=2.0,
)
CONFIGS = {
    "default": SimConfig(),
    "no-margin": SimConfig(margin=None),
    "close-fill": SimConfig(fill="close"),
    "stops": SimConfig(stop_loss=0.03, take_profit=0.06, slippage_bps=5.0, commission=0.002),
    "stops-close-whole": SimConfig(fill="close", units="whole", stop_loss=0.02, take_profit=0.04),
    "fixed-fraction-long-only": SimConfig(sizing=FixedFraction(fraction=0.6), allow_short=False),
    "vol-target-whole": SimConfig(
        sizing=VolTarget(lookback=15, max_leverage=2.0), units="whole", stop_loss=0.05
    ),
    "kelly": SimConfig(sizing=KellyCapped(lookback=30, cap=2.0), fill="close", take_profit=0.08),
    "liquidation-prone": SimConfig(sizing=FixedFraction(fraction=8.0), commission=0.0),
    "liquidation-prone-no-margin": SimConfig(
        sizing=FixedFraction(fraction=8.0), commission=0.0, margin=None
    ),
    "thin-margin-stops": SimConfig(
        sizing=FixedFraction(fraction=4.0), margin=THIN_MARGIN, stop_loss=0.08, take_profit=0.1
    ),
    "thin-margin-close-whole": SimConfig(
        sizing=VolTarget(annual_vol=1.0, lookback=10, max_leverage=5.0),
        margin=THIN_MARGIN,
        fill="close",
        units="whole",
    ),
    # 6.7x on 5% maintenance: margin calls that leave equity, and gaps through zero equity (bust)
    "gap-bust": SimConfig(
        sizing=FixedFraction(fraction=10.0),
        margin=MarginConfig(
            initial_margin=0.15, maintenance_margin_long=0.05, maintenance_margin_short=0.05
        ),
    ),
}


def step_through(
    sim: Simulator, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step every bar; prices (n,) shared or (n x k) per column, targets (n x k)."""
    n = targets.shape[0]
    equity = np.empty((n, sim.n_columns))
    units = np.empty((n, sim.n_columns))
    for i in range(n):
        equity[i] = sim.step(o[i], h[i], lo[i], c[i], targets[i])
        units[i] = sim.units
    return equity, units


def assert_parity(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    targets: np.ndarray,
    config: SimConfig,
    ppy: float,
    trade_capacity: int = 64,
) -> None:
    batch = simulate(o, h, lo, c, targets, config, ppy)
    sim = Simulator(config, ppy, n_columns=targets.shape[1], trade_capacity=trade_capacity)
    equity, units = step_through(sim, o, h, lo, c, targets)
    assert np.array_equal(batch.equity, equity, equal_nan=True)
    assert np.array_equal(batch.positions, units, equal_nan=True)
    assert np.array_equal(batch.trades, sim.trades(include_open=True), equal_nan=True)
    assert np.array_equal(sim.equity, batch.equity[-1])
    closed = batch.trades[batch.trades[:, K.T_REASON] != K.REASON_OPEN]
    assert np.array_equal(closed, sim.trades(include_open=False), equal_nan=True)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batch_and_step_paths_agree_exactly_on_shared_prices(goog: Bars, name: str) -> None:
    n = 900
    o, h, lo, c = (a[:n] for a in ohlc(goog))
    targets = random_targets(n, seed=11, k=3, p_change=0.1)
    assert_parity(o, h, lo, c, targets, CONFIGS[name], goog.periods_per_year)


@pytest.mark.parametrize(
    "name", ["default", "stops-close-whole", "vol-target-whole", "kelly", "thin-margin-stops"]
)
def test_batch_and_step_paths_agree_exactly_on_per_column_prices(
    synthetic_bars: Callable[..., Bars], name: str
) -> None:
    cols = [synthetic_bars(n=700, seed=s, timeframe="1h") for s in (1, 2, 3, 4)]
    o, h, lo, c = (
        np.column_stack([b.column(x) for b in cols]) for x in ("open", "high", "low", "close")
    )
    targets = random_targets(700, seed=5, k=4, p_change=0.15)
    assert_parity(o, h, lo, c, targets, CONFIGS[name], cols[0].periods_per_year)


@pytest.mark.parametrize(
    ("name", "bust_columns"),
    [("thin-margin-stops", []), ("thin-margin-close-whole", []), ("gap-bust", [0])],
)
def test_margin_parity_configs_liquidate_inside_bars_and_at_gaps_and_charge_carry(
    goog: Bars, name: str, bust_columns: list[int]
) -> None:
    """The parity tests are only as strong as what they run: on their inputs these configs must
    margin-call every column, at the open (a gap) and inside a bar (at p*), more than once, trade
    again after a margin call that left equity, and charge carry; ``gap-bust`` must also take a
    column bust through a gap (equity <= 0 after the liquidation: no trade after it)."""
    n = 900
    o, h, lo, c = (a[:n] for a in ohlc(goog))
    config = CONFIGS[name]
    out = simulate(o, h, lo, c, random_targets(n, seed=11, k=3, p_change=0.1), config, 252.0)
    trades = out.trades
    liq = trades[trades[:, K.T_REASON] == K.REASON_LIQUIDATION]
    assert set(liq[:, K.T_COL]) == {0.0, 1.0, 2.0}
    assert len(liq) > 3
    side = np.sign(liq[:, K.T_UNITS])
    at_open = o[liq[:, K.T_EXIT_BAR].astype(int)] * (1 - side * config.slippage_bps / 1e4)
    gap = liq[:, K.T_EXIT_PRICE] == at_open
    assert gap.any()
    assert not gap.all()
    assert trades[:, K.T_CARRY].sum() > 1_000.0
    for j in range(3):
        mine = trades[trades[:, K.T_COL] == j]
        calls = mine[mine[:, K.T_REASON] == K.REASON_LIQUIDATION]
        eq = out.equity[:, j]
        if j in bust_columns:  # the last liquidation went through zero: nothing after it
            bust = int(calls[-1, K.T_EXIT_BAR])
            assert np.argmax(eq <= 0.0) == bust
            assert (eq[bust:] == eq[bust]).all()
            assert (out.positions[bust:, j] == 0.0).all()
            assert (mine[:, K.T_ENTRY_BAR] <= bust).all()
            assert (eq[:bust] > 0.0).all()  # the margin calls before it left equity
        else:
            assert (eq > 0.0).all()
        # a margin call that left equity: the column trades again
        first = calls[0, K.T_EXIT_BAR]
        assert eq[int(first)] > 0.0
        assert (mine[:, K.T_ENTRY_BAR] > first).any()


def test_simulator_trade_buffer_growth_keeps_parity(goog: Bars) -> None:
    o, h, lo, c = ohlc(goog)
    targets = random_targets(len(goog), seed=2, k=2, p_change=0.5)  # hundreds of trades per column
    assert_parity(o, h, lo, c, targets, CONFIGS["stops"], goog.periods_per_year, trade_capacity=4)


def test_simulator_returns_equity_at_each_close_and_exposes_state() -> None:
    sim = Simulator(SimConfig(commission=0.0, slippage_bps=0.0, margin=None), 252.0, n_columns=2)
    eq = sim.step(100.0, 101.0, 99.0, 100.0, np.array([1.0, -1.0]))
    np.testing.assert_array_equal(eq, [10_000.0, 10_000.0])
    eq = sim.step(100.0, 111.0, 99.0, 110.0, np.array([1.0, -1.0]))
    np.testing.assert_array_equal(sim.units, [100.0, -100.0])
    np.testing.assert_array_equal(eq, [11_000.0, 9_000.0])
    np.testing.assert_array_equal(sim.cash, [0.0, 20_000.0])
    assert sim.bar == 2
    open_trades = sim.trades(include_open=True)
    assert open_trades.shape == (2, K.N_TRADE)
    assert (open_trades[:, K.T_REASON] == K.REASON_OPEN).all()
    np.testing.assert_array_equal(open_trades[:, K.T_PNL], [1_000.0, -1_000.0])
    assert sim.trades(include_open=False).shape == (0, K.N_TRADE)


def test_simulator_rejects_target_outside_unit_interval() -> None:
    sim = Simulator(SimConfig(), 252.0)
    with pytest.raises(ConfigError, match=r"outside \[-1, 1\]"):
        sim.step(100.0, 101.0, 99.0, 100.0, 1.5)


def test_simulator_bad_target_error_names_the_current_bar() -> None:
    sim = Simulator(SimConfig(), 252.0)
    for _ in range(5):
        sim.step(100.0, 101.0, 99.0, 100.0, 0.5)
    with pytest.raises(ConfigError, match=r"at bar 5\b"):
        sim.step(100.0, 101.0, 99.0, 100.0, 1.5)


NEXT_OPEN_CONFIGS = [n for n, c in CONFIGS.items() if c.fill == "next_open"]


@pytest.mark.parametrize("name", NEXT_OPEN_CONFIGS)
def test_advance_then_decide_equals_step_with_targets(goog: Bars, name: str) -> None:
    """The RL env's order of calls (observe the close, then act) is the backtest's, exactly."""
    o, h, lo, c = ohlc(goog)
    targets = random_targets(len(c), seed=11, k=3)
    config = CONFIGS[name]
    batch = simulate(o, h, lo, c, targets, config, goog.periods_per_year)
    sim = Simulator(config, goog.periods_per_year, n_columns=3)
    equity = np.empty_like(batch.equity)
    for i in range(len(c)):
        equity[i] = sim.advance(o[i], h[i], lo[i], c[i])
        sim.decide(targets[i])
    assert np.array_equal(batch.equity, equity)
    assert np.array_equal(batch.trades, sim.trades(include_open=True), equal_nan=True)


def test_decide_needs_next_open_fills_and_an_advanced_bar() -> None:
    with pytest.raises(ConfigError, match="advance a bar first"):
        Simulator(SimConfig(), 252.0).decide(1.0)
    sim = Simulator(SimConfig(fill="close"), 252.0)
    sim.advance(100.0, 101.0, 99.0, 100.0)
    with pytest.raises(ConfigError, match="fill='next_open'"):
        sim.decide(1.0)
    sim = Simulator(SimConfig(), 252.0)
    sim.advance(100.0, 101.0, 99.0, 100.0)
    with pytest.raises(ConfigError, match=r"at bar 0 \(column 0\) is outside"):
        sim.decide(2.0)


# ---- many columns vs one at a time ----------------------------------------------------------------


def _split_by_column(trades: np.ndarray, k: int) -> list[np.ndarray]:
    out = []
    for j in range(k):
        rows = trades[trades[:, K.T_COL] == j].copy()
        rows[:, K.T_COL] = 0.0
        out.append(rows)
    return out


@pytest.mark.parametrize("k", [5, 63, 64, 80])
@pytest.mark.parametrize(
    "name",
    ["stops", "vol-target-whole", "liquidation-prone", "thin-margin-close-whole", "gap-bust"],
)
def test_many_columns_in_one_call_equal_each_column_alone(goog: Bars, k: int, name: str) -> None:
    assert K.PARALLEL_MIN_COLUMNS == 64  # k=64, 80 take the parallel path, 5 and 63 the serial one
    n = 600
    o, h, lo, c = (a[:n] for a in ohlc(goog))
    targets = random_targets(n, seed=k, k=k, p_change=0.1)
    config = CONFIGS[name]
    many = simulate(o, h, lo, c, targets, config, goog.periods_per_year)
    per_col = _split_by_column(many.trades, k)
    for j in range(k):
        alone = simulate(o, h, lo, c, targets[:, j], config, goog.periods_per_year)
        assert np.array_equal(many.equity[:, j], alone.equity[:, 0])
        assert np.array_equal(many.positions[:, j], alone.positions[:, 0])
        assert np.array_equal(per_col[j], alone.trades, equal_nan=True)
        assert many.exposed_bars[j] == alone.exposed_bars[0]


def test_many_columns_with_per_column_prices_equal_each_column_alone(
    synthetic_bars: Callable[..., Bars],
) -> None:
    k, n = 70, 400
    bars = [synthetic_bars(n=n, seed=100 + j, timeframe="1h") for j in range(k)]
    o, h, lo, c = (
        np.column_stack([b.column(x) for b in bars]) for x in ("open", "high", "low", "close")
    )
    targets = random_targets(n, seed=8, k=k, p_change=0.1)
    config = CONFIGS["stops"]
    many = simulate(o, h, lo, c, targets, config, 8760.0)
    per_col = _split_by_column(many.trades, k)
    for j in range(k):
        alone = simulate(o[:, j], h[:, j], lo[:, j], c[:, j], targets[:, j], config, 8760.0)
        assert np.array_equal(many.equity[:, j], alone.equity[:, 0])
        assert np.array_equal(per_col[j], alone.trades, equal_nan=True)


def test_price_columns_must_match_target_columns(goog: Bars) -> None:
    o, h, lo, c = (np.column_stack([a[:50]] * 2) for a in ohlc(goog))
    with pytest.raises(ConfigError, match="do not match prices"):
        simulate(o, h, lo, c, np.zeros((50, 3)), SimConfig(), 252.0)


# ---- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 70])
def test_same_inputs_twice_give_identical_results(goog: Bars, k: int) -> None:
    targets = random_targets(len(goog), seed=4, k=k, p_change=0.1)
    config = CONFIGS["stops-close-whole"]
    a = simulate(*ohlc(goog), targets, config, goog.periods_per_year)
    b = simulate(*ohlc(goog), targets.copy(), config, goog.periods_per_year)
    assert np.array_equal(a.equity, b.equity)
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.trades, b.trades, equal_nan=True)
    assert np.array_equal(a.exposed_bars, b.exposed_bars)


@pytest.mark.parametrize(
    "name", ["default", "no-margin", "thin-margin-stops", "thin-margin-close-whole", "gap-bust"]
)
@pytest.mark.parametrize("m", [137, 450, 899])
def test_truncated_inputs_give_the_same_prefix(goog: Bars, name: str, m: int) -> None:
    """No bar reads a later one: liquidations, carry and stops on the first ``m`` bars are the same
    whether or not the later bars exist."""
    n = 900
    o, h, lo, c = (a[:n] for a in ohlc(goog))
    targets = random_targets(n, seed=11, k=3, p_change=0.1)
    config = CONFIGS[name]
    full = simulate(o, h, lo, c, targets, config, goog.periods_per_year)
    cut = simulate(o[:m], h[:m], lo[:m], c[:m], targets[:m], config, goog.periods_per_year)
    assert np.array_equal(full.equity[:m], cut.equity)
    assert np.array_equal(full.positions[:m], cut.positions)
    closed = full.trades[
        (full.trades[:, K.T_EXIT_BAR] < m) & (full.trades[:, K.T_REASON] != K.REASON_OPEN)
    ]
    cut_closed = cut.trades[cut.trades[:, K.T_REASON] != K.REASON_OPEN]
    assert np.array_equal(closed, cut_closed, equal_nan=True)


def test_positions_flag_off_returns_same_equity_and_trades(goog: Bars) -> None:
    targets = random_targets(len(goog), seed=9, k=2)
    a = simulate(*ohlc(goog), targets, SimConfig(), 252.0)
    b = simulate(*ohlc(goog), targets, SimConfig(), 252.0, positions=False)
    assert np.array_equal(a.equity, b.equity)
    assert np.array_equal(a.trades, b.trades, equal_nan=True)


def test_exposed_bars_count_closes_with_a_position(goog: Bars) -> None:
    targets = random_targets(len(goog), seed=3, k=3, p_change=0.1)
    out = simulate(*ohlc(goog), targets, CONFIGS["stops"], 252.0)
    np.testing.assert_array_equal(out.exposed_bars, (out.positions != 0).sum(axis=0))


# ---- trades frame ----------------------------------------------------------------------------------


def test_trades_frame_names_columns_reasons_and_sides() -> None:
    o = np.array([100.0, 100.0, 100.0, 94.0, 100.0, 100.0])
    px = (o, o, o, o)
    targets = np.column_stack([[1, 1, 1, 1, -1, -1], [0, -1, -1, 1, 1, 1]])
    out = simulate(*px, targets, SimConfig(stop_loss=0.05, slippage_bps=0.0), 252.0)
    index = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    frame = trades_frame(out.trades, index, columns=["a", "b"])
    assert list(frame.columns) == [
        "column",
        "entry_time",
        "exit_time",
        "entry_bar",
        "exit_bar",
        "side",
        "units",
        "entry_price",
        "exit_price",
        "pnl",
        "return",
        "commission",
        "carry",
        "exit_reason",
        "max_units",
    ]
    assert list(frame.column) == ["a", "a", "b", "b"]
    assert list(frame.exit_reason) == ["stop_loss", "open", "signal", "open"]
    assert list(frame.side) == ["long", "short", "short", "long"]
    assert (frame.entry_time == index[frame.entry_bar]).all()
    assert (frame.exit_time == index[frame.exit_bar]).all()
