"""The portfolio kernel: several symbols on one account.

A portfolio of one symbol at weight 1 is the single-symbol kernel bit for bit, for every config of
the parity suite; a symbol trading alone in a portfolio is the single-symbol kernel at its weight;
trades add up to the account's equity; symbols without a bar wait; the account margin-calls,
busts and charges carry as one.
"""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.sim import FixedFraction, SimConfig, simulate
from raytrader.sim import kernel as K
from raytrader.sim.portfolio import (
    F_BAR,
    F_COL,
    F_COMMISSION,
    F_REASON,
    F_UNITS,
    PortfolioSimulator,
    simulate_portfolio,
)
from tests.conftest import ohlc, random_targets
from tests.sim.test_engine import CONFIGS

N = 900


def universe(goog: Bars, k: int) -> tuple[np.ndarray, ...]:
    """``k`` price series of ``N`` bars: GOOG's consecutive windows, each rescaled to start at 100
    (different paths on one calendar), as (N x k) open, high, low, close."""
    o, h, lo, c = ohlc(goog)
    cols: list[list[np.ndarray]] = [[], [], [], []]
    for j in range(k):
        window = slice(j * 400, j * 400 + N)
        scale = 100.0 / o[window][0]
        for out, a in zip(cols, (o, h, lo, c), strict=True):
            out.append(a[window] * scale)
    return tuple(np.column_stack(a) for a in cols)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_symbol_at_weight_one_is_the_single_symbol_kernel(goog: Bars, name: str) -> None:
    o, h, lo, c = (a[:N] for a in ohlc(goog))
    targets = random_targets(N, seed=5, k=1, p_change=0.1)
    config = CONFIGS[name]
    single = simulate(o, h, lo, c, targets, config, 252.0)
    book = simulate_portfolio(
        *(a.reshape(-1, 1) for a in (o, h, lo, c)), targets, config, 252.0, np.ones(1)
    )
    assert np.array_equal(book.equity, single.equity[:, 0])
    assert np.array_equal(book.positions, single.positions)
    assert np.array_equal(book.trades, single.trades, equal_nan=True)
    assert np.array_equal(book.exposed_bars, single.exposed_bars)


@pytest.mark.parametrize(
    "name", ["default", "no-margin", "stops", "close-fill", "stops-close-whole"]
)
def test_a_symbol_trading_alone_is_the_single_kernel_at_its_weight(goog: Bars, name: str) -> None:
    """The other symbols stay flat (target 0): the account is the symbol's, all in at its weight
    (``FixedFraction(weight)`` alone: the same product, target x weight)."""
    o, h, lo, c = universe(goog, 3)
    targets = np.zeros((N, 3))
    targets[:, 1] = random_targets(N, seed=9, p_change=0.1)
    weights = np.array([0.2, 0.3, 0.5])
    config = CONFIGS[name]
    book = simulate_portfolio(o, h, lo, c, targets, config, 252.0, weights)
    alone = config.model_copy(update={"sizing": FixedFraction(fraction=0.3)})
    single = simulate(o[:, 1], h[:, 1], lo[:, 1], c[:, 1], targets[:, 1], alone, 252.0)
    assert np.array_equal(book.equity, single.equity[:, 0])
    assert np.array_equal(book.positions[:, 1], single.positions[:, 0])
    assert (book.positions[:, [0, 2]] == 0.0).all()
    mine = single.trades.copy()
    mine[:, K.T_COL] = 1.0
    assert np.array_equal(book.trades, mine, equal_nan=True)


def with_closed_markets(goog: Bars, k: int) -> tuple[np.ndarray, ...]:
    """:func:`universe` with some bars missing per symbol (a holiday on one exchange, a halt)."""
    prices = tuple(a.copy() for a in universe(goog, k))
    rng = np.random.default_rng(2)
    for j in range(1, k):
        gone = rng.choice(np.arange(1, N), size=40, replace=False)
        for a in prices:
            a[gone, j] = np.nan
    return prices


def step_through(
    sim: PortfolioSimulator, prices: tuple[np.ndarray, ...], targets: np.ndarray
) -> np.ndarray:
    o, h, lo, c = prices
    equity = np.array([sim.step(o[i], h[i], lo[i], c[i], targets[i]) for i in range(len(targets))])
    return equity


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_one_bar_path_is_the_whole_series_path(goog: Bars, name: str) -> None:
    prices = with_closed_markets(goog, 3)
    targets = random_targets(N, seed=4, k=3, p_change=0.1)
    weights = np.array([0.5, 0.25, 0.25])
    config = CONFIGS[name]
    book = simulate_portfolio(*prices, targets, config, 252.0, weights)
    sim = PortfolioSimulator(config, 252.0, weights, trade_capacity=4)  # grows its buffer
    assert np.array_equal(step_through(sim, prices, targets), book.equity)
    assert np.array_equal(sim.units, book.positions[-1])
    assert np.array_equal(sim.trades(include_open=True), book.trades, equal_nan=True)
    closed = book.trades[book.trades[:, K.T_REASON] != K.REASON_OPEN]
    assert np.array_equal(sim.trades(include_open=False), closed, equal_nan=True)


@pytest.mark.parametrize("name", ["default", "stops-close-whole", "thin-margin-stops", "gap-bust"])
def test_the_fills_of_each_bar_are_the_kernel_s_executions(goog: Bars, name: str) -> None:
    """Every change of a position is a logged fill; their commissions are the trades'."""
    o, h, lo, c = with_closed_markets(goog, 3)
    targets = random_targets(N, seed=6, k=3, p_change=0.1)
    config = CONFIGS[name]
    sim = PortfolioSimulator(config, 252.0, np.full(3, 1 / 3))
    units = np.zeros(3)
    commission = 0.0
    reasons = set()
    for i in range(N):
        before = sim.units
        sim.step(o[i], h[i], lo[i], c[i], targets[i])
        fills = sim.fills
        assert (fills[:, F_BAR] == i).all()
        moved = np.zeros(3)
        for f in fills:
            moved[int(f[F_COL])] += f[F_UNITS]
            reasons.add(int(f[F_REASON]))
        np.testing.assert_allclose(before + moved, sim.units, rtol=1e-12, atol=1e-9)
        units += moved
        commission += fills[:, F_COMMISSION].sum()
    np.testing.assert_allclose(units, sim.units, rtol=1e-9, atol=1e-9)
    trades = sim.trades(include_open=True)
    assert commission == pytest.approx(trades[:, K.T_COMMISSION].sum(), rel=1e-9)
    assert K.REASON_SIGNAL in reasons
    if name != "default":
        assert len(reasons) >= 2


def test_a_saved_state_continues_bit_for_bit(goog: Bars) -> None:
    prices = with_closed_markets(goog, 3)
    targets = random_targets(N, seed=8, k=3, p_change=0.1)
    config, weights = CONFIGS["vol-target-whole"], np.full(3, 0.3)
    whole = PortfolioSimulator(config, 252.0, weights)
    expected = step_through(whole, prices, targets)
    first = PortfolioSimulator(config, 252.0, weights)
    head = step_through(first, tuple(a[:500] for a in prices), targets[:500])
    resumed = PortfolioSimulator.from_bytes(first.to_bytes(), config, 252.0, weights)
    tail = step_through(resumed, tuple(a[500:] for a in prices), targets[500:])
    assert np.array_equal(np.concatenate([head, tail]), expected)
    assert np.array_equal(resumed.trades(), whole.trades(), equal_nan=True)
    with pytest.raises(ConfigError, match="does not fit 2 symbol"):
        PortfolioSimulator.from_bytes(first.to_bytes(), config, 252.0, np.full(2, 0.3))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_trades_of_every_symbol_add_up_to_the_account_s_equity(goog: Bars, name: str) -> None:
    o, h, lo, c = universe(goog, 3)
    config = CONFIGS[name]
    book = simulate_portfolio(
        o, h, lo, c, random_targets(N, seed=3, k=3, p_change=0.1), config, 252.0
    )
    assert set(book.trades[:, K.T_COL]) <= {0.0, 1.0, 2.0}
    assert len(set(book.trades[:, K.T_COL])) >= 2
    np.testing.assert_allclose(
        book.trades[:, K.T_PNL].sum(),
        book.equity[-1] - config.initial_cash,
        rtol=1e-9,
        atol=1e-9 * config.initial_cash,
    )


def test_orders_share_the_equity_and_the_weights_cap_each_symbol(goog: Bars) -> None:
    """All in on three symbols at weights summing to 1: each order takes its weight of the equity
    at the open (before the bar's first fill), so the first fills split the cash."""
    o, h, lo, c = universe(goog, 3)
    targets = np.full((N, 3), np.nan)
    targets[0] = 1.0
    weights = np.array([0.5, 0.3, 0.2])
    config = SimConfig(commission=0.0, slippage_bps=0.0, margin=None)
    book = simulate_portfolio(o, h, lo, c, targets, config, 252.0, weights)
    notional = book.positions[1] * o[1]
    np.testing.assert_allclose(notional, weights * config.initial_cash, rtol=1e-12)
    assert book.equity[1] == pytest.approx(
        config.initial_cash + (book.positions[1] * (c[1] - o[1])).sum()
    )


def test_a_symbol_without_a_bar_waits_for_its_next_open_and_keeps_its_last_close(
    goog: Bars,
) -> None:
    o, h, lo, c = (a.copy() for a in universe(goog, 2))
    for a in (o, h, lo, c):
        a[1:4, 1] = np.nan  # symbol 1's market is closed for bars 1 to 3, and 8 to 9
        a[8:10, 1] = np.nan
    targets = np.full((N, 2), np.nan)
    targets[0] = 1.0
    config = SimConfig(margin=None)
    book = simulate_portfolio(o, h, lo, c, targets, config, 252.0)
    entries = {int(t[K.T_COL]): int(t[K.T_ENTRY_BAR]) for t in book.trades}
    assert entries == {0: 1, 1: 4}  # the order waited for symbol 1's next open
    assert (book.positions[1:4, 1] == 0.0).all()
    # while symbol 1 has no bar, the account marks it at its last close (bar 7's)
    units = book.positions[9]
    assert book.equity[9] - book.equity[7] == pytest.approx(units[0] * (c[9, 0] - c[7, 0]))


def test_a_bust_account_closes_every_symbol_and_stops(goog: Bars) -> None:
    o, h, lo, c = universe(goog, 3)
    config = CONFIGS["liquidation-prone-no-margin"]  # 8x gross: a 12.5% move takes it bust
    targets = random_targets(N, seed=11, k=3, p_change=0.1)
    book = simulate_portfolio(o, h, lo, c, targets, config, 252.0, np.full(3, 1 / 3))
    assert (book.equity <= 0.0).any(), "the inputs must take this account bust"
    bust = int(np.argmax(book.equity <= 0.0))
    assert (book.equity[bust:] == book.equity[bust]).all()
    assert (book.positions[bust:] == 0.0).all()
    assert (book.trades[:, K.T_ENTRY_BAR] <= bust).all()


def test_the_account_margin_calls_positions_and_trades_on(goog: Bars) -> None:
    o, h, lo, c = universe(goog, 3)
    config = CONFIGS["gap-bust"]  # 6.7x gross on 5% maintenance
    book = simulate_portfolio(
        o, h, lo, c, random_targets(N, seed=11, k=3, p_change=0.1), config, 252.0
    )
    calls = book.trades[book.trades[:, K.T_REASON] == K.REASON_LIQUIDATION]
    assert len(set(calls[:, K.T_COL])) >= 2
    assert (book.equity > 0.0).all()
    assert (book.trades[:, K.T_ENTRY_BAR] > calls[0, K.T_EXIT_BAR]).any()


def test_the_same_inputs_twice_give_identical_results(goog: Bars) -> None:
    o, h, lo, c = universe(goog, 4)
    targets = random_targets(N, seed=1, k=4, p_change=0.1)
    runs = [simulate_portfolio(o, h, lo, c, targets, CONFIGS["kelly"], 252.0) for _ in range(2)]
    assert np.array_equal(runs[0].equity, runs[1].equity)
    assert np.array_equal(runs[0].trades, runs[1].trades, equal_nan=True)


def test_bad_inputs_name_the_problem(goog: Bars) -> None:
    o, h, lo, c = universe(goog, 2)
    targets = np.zeros((N, 2))
    names = ["AAA", "BBB"]
    with pytest.raises(ConfigError, match=r"weights sum to 1\.2"):
        simulate_portfolio(o, h, lo, c, targets, SimConfig(), 252.0, np.array([0.6, 0.6]), names)
    with pytest.raises(ConfigError, match=r"weight of BBB is 0\.0"):
        simulate_portfolio(o, h, lo, c, targets, SimConfig(), 252.0, np.array([0.6, 0.0]), names)
    broken = h.copy()
    broken[7, 1] = np.nan
    with pytest.raises(ConfigError, match="BBB at bar 7: open, high, low and close"):
        simulate_portfolio(o, broken, lo, c, targets, SimConfig(), 252.0, None, names)
    targets[3, 0] = 2.0
    with pytest.raises(ConfigError, match="AAA"):
        simulate_portfolio(o, h, lo, c, targets, SimConfig(), 252.0, None, names)
