"""Metrics pinned to empyrical-reloaded's definitions, plus the ones empyrical has no equivalent for."""

from __future__ import annotations

import empyrical
import numpy as np
import pytest

from raytrader.backtest.engine import run_backtest
from raytrader.backtest.metrics import (
    METRIC_NAMES,
    column_metrics,
    compute_metrics,
    equity_returns,
    wealth,
)
from raytrader.data import Bars
from raytrader.sim import SimConfig
from raytrader.sim import kernel as K
from raytrader.strategies import make_strategy

RTOL = 1e-10


def empyrical_reference(returns: np.ndarray, ppy: float) -> dict[str, float]:
    return {
        "annual_return": empyrical.annual_return(returns, annualization=ppy),
        "annual_volatility": empyrical.annual_volatility(returns, annualization=ppy),
        "sharpe": empyrical.sharpe_ratio(returns, annualization=ppy),
        "sortino": empyrical.sortino_ratio(returns, annualization=ppy),
        "calmar": empyrical.calmar_ratio(returns, annualization=ppy),
        "max_drawdown": empyrical.max_drawdown(returns),
        "var_95": empyrical.value_at_risk(returns, cutoff=0.05),
        "cvar_95": empyrical.conditional_value_at_risk(returns, cutoff=0.05),
    }


def assert_matches_empyrical(equity: np.ndarray, cash: float, ppy: float) -> None:
    returns = equity_returns(equity.reshape(-1, 1), cash)[:, 0]
    ours = compute_metrics(equity.reshape(-1, 1), cash, ppy)
    for name, ref in empyrical_reference(returns, ppy).items():
        np.testing.assert_allclose(ours[name][0], ref, rtol=RTOL, atol=0, err_msg=name)
    np.testing.assert_allclose(ours["total_return"][0], equity[-1] / cash - 1.0, rtol=1e-15)
    assert ours["final_equity"][0] == equity[-1]


@pytest.mark.parametrize(
    ("dataset", "strategy", "params", "ppy"),
    [
        ("goog", "ma_cross", {"fast": 10, "slow": 30}, 252.0),
        ("goog", "rsi", {}, 252.0),
        ("goog", "mean_reversion", {}, 252.0),
        ("eurusd", "macd", {}, 6240.0),
        ("eurusd", "bollinger", {}, 6240.0),
    ],
)
def test_curve_metrics_match_empyrical_on_real_backtests(
    request: pytest.FixtureRequest, dataset: str, strategy: str, params: dict[str, int], ppy: float
) -> None:
    bars: Bars = request.getfixturevalue(dataset)
    assert bars.periods_per_year == ppy
    result = run_backtest(bars, make_strategy(strategy, params), SimConfig(stop_loss=0.05))
    assert result.metrics["max_drawdown"] < 0.0
    assert_matches_empyrical(result.equity.to_numpy(), result.config.initial_cash, ppy)


@pytest.mark.parametrize("n", [3, 20, 21, 250, 5000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_metrics_match_empyrical_on_random_equity_curves(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0003, 0.02, n)
    r[0] = -0.01  # at least one losing bar, so the Sortino denominator is not zero
    equity = 1_000.0 * np.cumprod(1.0 + r)
    assert_matches_empyrical(equity, 1_000.0, 252.0)
    assert_matches_empyrical(equity, 1_000.0, 6240.0)


def test_equity_returns_start_against_initial_cash() -> None:
    eq = np.array([[110.0, 90.0], [121.0, 99.0]])
    r = equity_returns(eq, 100.0)
    np.testing.assert_allclose(r, [[0.1, -0.1], [0.1, 0.1]], rtol=1e-14)


def test_sortino_without_losing_bars_matches_empyrical() -> None:
    equity = np.array([101.0, 103.0, 103.5, 106.0])
    returns = equity_returns(equity.reshape(-1, 1), 100.0)[:, 0]
    ours = compute_metrics(equity.reshape(-1, 1), 100.0, 252.0)["sortino"][0]
    assert ours == empyrical.sortino_ratio(returns, annualization=252.0)


def test_no_drawdown_gives_zero_max_drawdown_and_nan_calmar_like_empyrical() -> None:
    equity = np.array([101.0, 103.0, 102.9, 106.0])
    equity = np.maximum.accumulate(equity)
    m = compute_metrics(equity.reshape(-1, 1), 100.0, 252.0)
    returns = equity_returns(equity.reshape(-1, 1), 100.0)[:, 0]
    assert m["max_drawdown"][0] == 0.0 == empyrical.max_drawdown(returns)
    assert np.isnan(m["calmar"][0])
    assert np.isnan(empyrical.calmar_ratio(returns, annualization=252.0))
    assert m["max_drawdown_duration"][0] == 0.0


def test_flat_equity_has_zero_volatility_and_nan_sharpe_sortino() -> None:
    m = compute_metrics(np.full((50, 1), 100.0), 100.0, 252.0)
    assert m["annual_volatility"][0] == 0.0
    assert np.isnan(m["sharpe"][0])
    assert np.isnan(m["sortino"][0])
    assert m["total_return"][0] == 0.0
    assert m["max_drawdown"][0] == 0.0


@pytest.mark.parametrize(
    ("equity", "cash", "expected"),
    [
        # bars 2-3 below the 110 peak, then bars 5-7 below the 111 peak: longest run 3
        ([100.0, 110.0, 105.0, 100.0, 111.0, 90.0, 95.0, 99.0, 112.0], 100.0, 3.0),
        # below the initial cash from the first bar to the end
        ([95.0, 97.0, 99.0, 99.9], 100.0, 4.0),
        # equal to the peak is not below it
        ([100.0, 100.0, 99.0, 100.0, 98.0, 97.0], 100.0, 2.0),
        ([101.0, 102.0, 103.0], 100.0, 0.0),
    ],
)
def test_max_drawdown_duration_by_hand(equity: list[float], cash: float, expected: float) -> None:
    m = compute_metrics(np.array(equity).reshape(-1, 1), cash, 252.0)
    assert m["max_drawdown_duration"][0] == expected


def test_max_drawdown_includes_the_initial_cash_as_a_peak() -> None:
    m = compute_metrics(np.array([[90.0], [95.0]]), 100.0, 252.0)
    assert m["max_drawdown"][0] == pytest.approx(-0.1, rel=1e-14)


def _trade(col: int, pnl: float, reason: int = K.REASON_SIGNAL) -> np.ndarray:
    row = np.zeros(K.N_TRADE)
    row[K.T_COL] = col
    row[K.T_PNL] = pnl
    row[K.T_REASON] = reason
    return row


def test_win_rate_profit_factor_expectancy_by_hand() -> None:
    trades = np.vstack(
        [
            _trade(0, 100.0),
            _trade(0, -50.0, K.REASON_STOP_LOSS),
            _trade(0, 30.0, K.REASON_TAKE_PROFIT),
            _trade(0, -20.0, K.REASON_LIQUIDATION),
            _trade(0, 999.0, K.REASON_OPEN),
            _trade(1, 10.0),
            _trade(1, 0.0),
            _trade(3, -5.0, K.REASON_OPEN),
        ]
    )
    m = compute_metrics(
        np.full((10, 4), 100.0),
        100.0,
        252.0,
        trades=trades,
        exposed_bars=np.array([5.0, 10.0, 0.0, 1.0]),
    )
    np.testing.assert_array_equal(m["num_trades"], [5.0, 2.0, 0.0, 1.0])
    # column 0: closed trades 100, -50, 30, -20 (the open trade counts only in num_trades)
    assert m["win_rate"][0] == 0.5
    assert m["profit_factor"][0] == pytest.approx(130.0 / 70.0, rel=1e-15)
    assert m["expectancy"][0] == 15.0
    # column 1: a zero-P&L trade is not a win, and no losses -> infinite profit factor
    assert m["win_rate"][1] == 0.5
    assert m["profit_factor"][1] == np.inf
    assert m["expectancy"][1] == 5.0
    # no closed trades -> NaN
    for col in (2, 3):
        assert np.isnan(m["win_rate"][col])
        assert np.isnan(m["profit_factor"][col])
        assert np.isnan(m["expectancy"][col])
    np.testing.assert_array_equal(m["exposure"], [0.5, 1.0, 0.0, 0.1])


def test_metrics_without_trades_are_zero_count_and_nan_ratios() -> None:
    m = compute_metrics(np.full((5, 2), 100.0), 100.0, 252.0)
    np.testing.assert_array_equal(m["num_trades"], [0.0, 0.0])
    assert np.isnan(m["win_rate"]).all()
    assert np.isnan(m["exposure"]).all()
    assert set(m) == set(METRIC_NAMES)
    assert set(column_metrics(m, 1)) == set(METRIC_NAMES)


@pytest.mark.parametrize("k", [10, 70])
def test_metrics_of_many_columns_equal_each_column_alone(k: int) -> None:
    rng = np.random.default_rng(k)
    equity = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, (300, k)), axis=0)
    many = compute_metrics(equity, 100.0, 252.0)
    rows = compute_metrics(np.ascontiguousarray(equity.T), 100.0, 252.0, rows=True)
    for j in range(k):
        alone = compute_metrics(equity[:, j], 100.0, 252.0)
        for name in METRIC_NAMES:
            assert np.array_equal(many[name][j], alone[name][0], equal_nan=True), name
            assert np.array_equal(rows[name][j], alone[name][0], equal_nan=True), name


# ---- a bust curve ---------------------------------------------------------------------------------

BUST = np.array([100.0, 110.0, 50.0, -20.0, -20.0, -30.0])  # cash 100; bust at bar 3


def test_bust_curve_metrics_by_hand() -> None:
    m = column_metrics(compute_metrics(BUST, 100.0, 252.0))
    life = np.array([0.0, 0.1, 50.0 / 110.0 - 1.0, -1.0])  # returns up to the bust bar
    assert m["total_return"] == -1.0  # all is lost, not -130%
    assert m["final_equity"] == -30.0  # the account's own value: a debt
    assert m["annual_return"] == -1.0
    assert m["max_drawdown"] == -1.0
    assert m["calmar"] == -1.0
    assert m["max_drawdown_duration"] == 4.0  # below the 110 peak from bar 2 to the end
    mean, std = life.mean(), life.std(ddof=1)
    assert m["annual_volatility"] == pytest.approx(std * np.sqrt(252.0), rel=1e-14)
    assert m["sharpe"] == pytest.approx(mean / std * np.sqrt(252.0), rel=1e-14)
    downside = np.sqrt(np.mean(np.minimum(life, 0.0) ** 2))
    assert m["sortino"] == pytest.approx(mean / downside * np.sqrt(252.0), rel=1e-14)
    # 4 returns: the 5th percentile sits 0.15 of the way from the lowest to the next
    lowest, second = -1.0, 50.0 / 110.0 - 1.0
    assert m["var_95"] == pytest.approx(lowest + 0.15 * (second - lowest), rel=1e-14)
    assert m["cvar_95"] == -1.0


def test_bust_curve_life_metrics_match_empyrical_on_the_life_returns() -> None:
    rng = np.random.default_rng(4)
    equity = 1_000.0 * np.cumprod(1.0 + rng.normal(0.0, 0.03, 300))
    equity[200:] = -55.0  # a gap through zero at bar 200; the account stays bust
    life = equity_returns(equity.reshape(-1, 1), 1_000.0)[:201, 0]
    assert life[-1] == -1.0
    ours = compute_metrics(equity, 1_000.0, 252.0)
    for name in ("annual_volatility", "sharpe", "sortino", "var_95", "cvar_95"):
        ref = empyrical_reference(life, 252.0)[name]
        np.testing.assert_allclose(ours[name][0], ref, rtol=RTOL, err_msg=name)
    assert ours["max_drawdown"][0] == -1.0 == empyrical.max_drawdown(life)
    assert ours["total_return"][0] == -1.0


def test_equity_returns_of_a_bust_curve_are_minus_one_then_zero() -> None:
    r = equity_returns(BUST.reshape(-1, 1), 100.0)[:, 0]
    np.testing.assert_allclose(r, [0.0, 0.1, 50.0 / 110.0 - 1.0, -1.0, 0.0, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(wealth(BUST.reshape(-1, 1))[:, 0], [100, 110, 50, 0, 0, 0])


def test_zero_equity_is_bust_and_a_curve_never_recovers_from_it() -> None:
    # a hand-made curve that comes back after touching zero: the metrics read it as bust there
    m = column_metrics(compute_metrics(np.array([100.0, 0.0, 120.0, 130.0]), 100.0, 252.0))
    assert m["total_return"] == -1.0
    assert m["final_equity"] == 130.0
    # life returns 0, -1: mean -0.5, std sqrt(0.5)
    assert m["sharpe"] == pytest.approx(-0.5 / np.sqrt(0.5) * np.sqrt(252.0), rel=1e-14)


def test_margin_call_with_equity_left_is_an_ordinary_curve(goog: Bars) -> None:
    """A liquidation that leaves equity above 0 is no bust: the flat cash after it returns 0 and
    the metrics are empyrical's over every bar."""
    result = run_backtest(goog, make_strategy("rsi"))  # the default short is margin-called
    assert result.trades.exit_reason.iloc[0] == "liquidation"
    assert len(result.trades) > 1  # and the account trades on
    equity = result.equity.to_numpy()
    assert equity.min() > 0.0
    assert_matches_empyrical(equity, 10_000.0, 252.0)


def test_liquidated_frictionless_backtest_is_bust(goog: Bars) -> None:
    result = run_backtest(goog, make_strategy("rsi"), SimConfig(margin=None))
    equity = result.equity.to_numpy()
    bust = int(np.argmax(equity <= 0.0))
    assert equity[bust] < 0.0
    assert (equity[bust:] == equity[bust]).all()
    m = result.metrics
    assert m["total_return"] == m["max_drawdown"] == m["annual_return"] == -1.0
    assert m["final_equity"] == equity[-1] < 0.0
    life = equity_returns(equity.reshape(-1, 1), 10_000.0)[: bust + 1, 0]
    np.testing.assert_allclose(
        m["sharpe"], empyrical.sharpe_ratio(life, annualization=252.0), rtol=RTOL
    )
