"""Backtest driver: results, sweeps, grids, reports, and a cross-check against backtesting.py."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.backtest.engine import parse_grid, run_backtest, run_targets, sweep
from raytrader.backtest.metrics import METRIC_NAMES
from raytrader.backtest.report import write_report
from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.sim import MarginConfig, SimConfig
from raytrader.strategies import make_strategy
from tests.conftest import make_bars, random_targets

TRADE_COLUMNS = [
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


def test_run_backtest_result_fields(goog: Bars) -> None:
    config = SimConfig(commission=0.001, stop_loss=0.1)
    result = run_backtest(goog, make_strategy("ma_cross", {"fast": 10, "slow": 20}), config)
    assert (result.symbol, result.timeframe, result.strategy) == ("GOOG", "1d", "ma_cross")
    assert result.params == {"short": True, "fast": 10, "slow": 20}
    assert result.periods_per_year == 252.0
    assert result.config is config
    assert set(result.metrics) == set(METRIC_NAMES)
    for s in (result.equity, result.positions, result.targets, result.returns):
        assert isinstance(s, pd.Series)
        assert s.index.equals(goog.index)
    assert list(result.trades.columns) == TRADE_COLUMNS
    assert result.metrics["num_trades"] == len(result.trades)
    assert result.metrics["final_equity"] == result.equity.iloc[-1]
    assert result.metrics["total_return"] == pytest.approx(
        result.equity.iloc[-1] / 10_000 - 1, rel=1e-14
    )
    assert result.metrics["exposure"] == pytest.approx((result.positions != 0).mean(), rel=1e-14)
    assert result.trades.pnl.sum() == pytest.approx(result.equity.iloc[-1] - 10_000, rel=1e-9)
    summary = result.summary()
    json.dumps(summary, allow_nan=False)  # JSON-ready: non-finite values become None
    assert summary["bars"] == len(goog)
    assert summary["trades"] == len(result.trades)
    assert summary["start"] == goog.index[0].isoformat()


def test_run_backtest_accepts_a_ready_target_series(goog: Bars) -> None:
    strategy = make_strategy("rsi")
    from_strategy = run_backtest(goog, strategy)
    series = strategy.target_positions(goog.frame)
    from_series = run_backtest(goog, series, name="my_targets")
    assert from_series.strategy == "my_targets"
    assert from_series.params == {}
    assert np.array_equal(from_series.equity.to_numpy(), from_strategy.equity.to_numpy())
    assert from_series.metrics.keys() == from_strategy.metrics.keys()
    for name, value in from_strategy.metrics.items():
        assert np.array_equal(from_series.metrics[name], value, equal_nan=True), name


def test_run_backtest_rejects_out_of_range_targets(goog: Bars) -> None:
    targets = pd.Series(0.0, index=goog.index)
    targets.iloc[7] = 2.0
    with pytest.raises(ConfigError, match="bar 7"):
        run_backtest(goog, targets)


@pytest.mark.parametrize("how", ["reversed", "shifted"])
def test_run_backtest_rejects_a_target_series_not_aligned_with_the_bars(
    goog: Bars, how: str
) -> None:
    targets = make_strategy("rsi").target_positions(goog.frame)
    if how == "reversed":
        misaligned = targets.iloc[::-1]
    else:
        misaligned = targets.copy()
        misaligned.index = misaligned.index + pd.Timedelta(days=1)
    with pytest.raises(ConfigError, match="aligned"):
        run_backtest(goog, misaligned)


def test_backtest_without_trades_has_empty_trades_and_flat_equity(
    goog: Bars, tmp_path: Path
) -> None:
    result = run_backtest(goog, pd.Series(0.0, index=goog.index), name="flat")
    assert result.trades.empty
    assert list(result.trades.columns) == TRADE_COLUMNS
    assert (result.equity == 10_000.0).all()
    assert result.metrics["num_trades"] == 0.0
    assert result.metrics["exposure"] == 0.0
    paths = write_report(result, tmp_path)
    assert pd.read_csv(paths["trades_csv"]).empty


def test_signal_at_close_fills_at_next_open_in_a_backtest() -> None:
    # SMA(2) crosses above SMA(4) at bar 7's close -> the buy fills at bar 8's open
    close = [20, 19, 18, 17, 16, 15, 17, 20, 24, 25, 24, 20, 16, 13, 12]
    opens = [c + 0.5 for c in close]
    bars = make_bars(opens, close=close)
    result = run_backtest(
        bars,
        make_strategy("ma_cross", {"fast": 2, "slow": 4}),
        SimConfig(commission=0.0, slippage_bps=0.0),
    )
    trades = result.trades
    assert list(trades.entry_bar) == [8, 12]
    assert list(trades.side) == ["long", "short"]
    assert list(trades.entry_price) == [opens[8], opens[12]]
    assert trades.exit_bar.iloc[0] == 12
    assert trades.exit_price.iloc[0] == opens[12]


def test_run_targets_many_columns_equal_single_backtests(goog: Bars) -> None:
    targets = random_targets(len(goog), seed=1, k=3, p_change=0.05)
    out, metrics = run_targets(goog, targets, SimConfig(stop_loss=0.05))
    rows_out, rows_metrics = run_targets(goog, targets.T, SimConfig(stop_loss=0.05), rows=True)
    assert np.array_equal(out.equity, rows_out.equity)
    for j in range(3):
        single = run_backtest(
            goog, pd.Series(targets[:, j], index=goog.index), SimConfig(stop_loss=0.05)
        )
        assert np.array_equal(out.equity[:, j], single.equity.to_numpy())
        for name in METRIC_NAMES:
            assert np.array_equal(metrics[name][j], single.metrics[name], equal_nan=True), name
            assert np.array_equal(rows_metrics[name][j], single.metrics[name], equal_nan=True), name


# ---- sweep and grids ---------------------------------------------------------------------------------


def test_sweep_returns_sorted_table_and_skips_invalid_combinations(goog: Bars) -> None:
    grid = {"fast": [5, 10, 20], "slow": [10, 20, 30]}
    config = SimConfig(commission=0.001)
    table = sweep(goog, "ma_cross", grid, config)
    # (10, 10), (20, 10), (20, 20) violate fast < slow
    assert table.attrs["skipped"] == 3
    assert len(table) == 6
    assert list(table.columns) == ["fast", "slow", *METRIC_NAMES]
    assert (table.fast < table.slow).all()
    sharpe = table.sharpe.to_numpy()
    missing = np.isnan(sharpe)
    assert (np.diff(sharpe[~missing]) <= 0).all()
    assert not (missing[:-1] & ~missing[1:]).any()  # NaN sorts last
    for row in table.itertuples():
        single = run_backtest(
            goog, make_strategy("ma_cross", {"fast": row.fast, "slow": row.slow}), config
        )
        assert row.sharpe == single.metrics["sharpe"]
        assert row.final_equity == single.metrics["final_equity"]
        assert row.num_trades == single.metrics["num_trades"]


def test_sweep_sort_by_other_metric_and_fixed_params(goog: Bars) -> None:
    table = sweep(
        goog,
        "ma_cross",
        {"fast": [5, 10], "slow": [30, 50]},
        sort_by="total_return",
        fixed={"short": False},
    )
    assert table.attrs["skipped"] == 0
    assert (np.diff(table.total_return.to_numpy()) <= 0).all()
    single = run_backtest(
        goog,
        make_strategy(
            "ma_cross", {"fast": int(table.fast[0]), "slow": int(table.slow[0]), "short": False}
        ),
    )
    assert table.total_return[0] == single.metrics["total_return"]


def test_sweep_errors(goog: Bars) -> None:
    with pytest.raises(ConfigError, match="cannot sort by 'nope'"):
        sweep(goog, "ma_cross", {"fast": [5]}, sort_by="nope")
    with pytest.raises(ConfigError, match="no valid parameter combination"):
        sweep(goog, "ma_cross", {"fast": [20, 30], "slow": [10]})


def test_sweep_unknown_grid_parameter_error_names_it(goog: Bars) -> None:
    with pytest.raises(ConfigError, match="fsat"):
        sweep(goog, "ma_cross", {"fsat": [5, 10], "slow": [20]})


def test_sweep_rejects_a_parameter_both_swept_and_fixed(goog: Bars) -> None:
    """A fixed value would silently replace the swept one, and the rows would show parameters that
    never ran: the overlap is an error naming the parameter."""
    with pytest.raises(ConfigError, match=r"\['fast'\] are both swept \(--grid\) and fixed"):
        sweep(goog, "ma_cross", {"fast": [5, 10], "slow": [20]}, fixed={"fast": 3})


def test_sweep_rows_show_the_parameters_run_together_with_the_fixed_ones(goog: Bars) -> None:
    grid = {"fast": [5, 10], "slow": [20, 30]}
    table = sweep(goog, "ma_cross", grid, fixed={"short": False})
    assert list(table.columns[:2]) == ["fast", "slow"]
    assert sorted(zip(table.fast, table.slow, strict=True)) == [
        (5, 20),
        (5, 30),
        (10, 20),
        (10, 30),
    ]
    for row in table.itertuples():
        params = {"fast": row.fast, "slow": row.slow, "short": False}
        single = run_backtest(goog, make_strategy("ma_cross", params))
        assert row.final_equity == single.metrics["final_equity"]
        assert row.sharpe == single.metrics["sharpe"]
        # the fixed parameter really ran: a long-only strategy differs from stop-and-reverse
        both_ways = run_backtest(goog, make_strategy("ma_cross", {**params, "short": True}))
        assert row.final_equity != both_ways.metrics["final_equity"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("5:50", list(range(5, 51))),
        ("5:50:5", [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]),
        ("1,2,3", [1, 2, 3]),
        ("0.5, 1.5,2", [0.5, 1.5, 2]),
        ("3:3", [3]),
        ([7, 9], [7, 9]),
    ],
)
def test_parse_grid_forms(spec: str | list[int], expected: list[float]) -> None:
    parsed = parse_grid({"p": spec})
    assert parsed == {"p": expected}
    assert [type(v) for v in parsed["p"]] == [type(v) for v in expected]


@pytest.mark.parametrize("spec", ["50:5", "5:50:0", "5:50:-1", "a:b", "1:2:3:4", "1.5:3", "5:"])
def test_parse_grid_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"grid p="):
        parse_grid({"p": spec})


# ---- margin account -----------------------------------------------------------------------------------


def test_rsi_short_on_goog_is_margin_called_instead_of_losing_more_than_everything(
    goog: Bars,
) -> None:
    """The issue's case: the default ``rsi`` shorts GOOG from its first weeks; without a margin
    account it lost 104.8% (equity -478). With the default retail margin account the short is
    liquidated when equity falls to 30% of its value; the account keeps what is left and trades
    again once the strategy's target changes."""
    strategy = make_strategy("rsi")
    result = run_backtest(goog, strategy)
    trades = result.trades
    first = trades.iloc[0]
    assert (first.side, first.exit_reason) == ("short", "liquidation")
    assert first.carry > 0.0  # the borrow fee
    call = int(first.exit_bar)
    left = result.equity.iloc[call]
    assert left == pytest.approx(4591.577621639375, rel=1e-9)
    value = -first.units * first.exit_price
    assert 0.25 * value < left < 0.30 * value  # the maintenance margin less the exit's costs
    # flat on what is left until the target changes, then trading again
    second = trades.iloc[1]
    assert second.entry_bar > call + 1
    assert (result.positions.iloc[call : int(second.entry_bar)] == 0.0).all()
    assert (result.equity.iloc[call : int(second.entry_bar)] == left).all()
    assert len(trades) > 10
    assert (result.equity > 0.0).all()
    assert result.metrics["final_equity"] == result.equity.iloc[-1] > 0.0
    assert result.metrics["total_return"] > -1.0
    assert result.metrics["max_drawdown"] > -1.0
    assert trades.pnl.sum() == pytest.approx(result.equity.iloc[-1] - 10_000.0, rel=1e-9)
    # the old frictionless account: equity below zero, read by the metrics as a bust (-100%)
    frictionless = run_backtest(goog, strategy, SimConfig(margin=None))
    assert frictionless.metrics["final_equity"] == pytest.approx(-477.926419, rel=1e-8)
    assert frictionless.metrics["total_return"] == -1.0
    assert frictionless.metrics["max_drawdown"] == -1.0
    assert frictionless.metrics["annual_return"] == -1.0


@pytest.mark.parametrize("name", ["rsi", "bollinger", "mean_reversion"])
def test_a_margin_call_does_not_end_the_backtest(goog: Bars, name: str) -> None:
    """Each of these shorts GOOG in 2004 and is margin-called within weeks; the account keeps the
    equity the call left and goes on trading (it used to stop after its one trade)."""
    result = run_backtest(goog, make_strategy(name))
    trades = result.trades
    first = trades.iloc[0]
    assert (first.side, first.exit_reason) == ("short", "liquidation")
    assert first.exit_time.year == 2004
    assert len(trades) > 10
    assert (trades.entry_bar > first.exit_bar).sum() == len(trades) - 1
    assert (result.equity > 0.0).all()  # no gap took it through zero: never bust
    assert trades.pnl.sum() == pytest.approx(result.equity.iloc[-1] - 10_000.0, rel=1e-9)


def test_ma_cross_on_goog_without_margin_reproduces_the_frictionless_numbers(goog: Bars) -> None:
    """``margin=None`` is the account before margin existed: the same numbers as then."""
    strategy = make_strategy("ma_cross", {"fast": 10, "slow": 20})
    frictionless = run_backtest(goog, strategy, SimConfig(margin=None))
    assert frictionless.metrics["final_equity"] == pytest.approx(67268.08744730958, rel=1e-12)
    assert frictionless.metrics["sharpe"] == pytest.approx(0.8899256738608052, rel=1e-12)
    assert (frictionless.trades.carry == 0.0).all()
    # the default account pays the borrow fee on the short half of the stop-and-reverse trades
    default = run_backtest(goog, strategy)
    assert default.metrics["num_trades"] == frictionless.metrics["num_trades"]
    carry = default.trades.carry.to_numpy()
    assert (carry[default.trades.side == "short"] > 0.0).all()
    assert 0.0 < default.metrics["final_equity"] < frictionless.metrics["final_equity"]
    assert default.trades.pnl.sum() == pytest.approx(default.equity.iloc[-1] - 10_000, rel=1e-9)


# ---- cross-check against backtesting.py ---------------------------------------------------------------


def test_ma_cross_matches_backtesting_py_on_goog(
    goog: Bars, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMA(10)/SMA(20) stop-and-reverse on GOOG, commission 0.2 %, no slippage, whole units, 10 000 cash.

    backtesting.py's SmaCross closes the position and opens the opposite one at the next open, like our
    reversal, so every closed trade must have the same entry/exit bars, side and entry/exit prices. The
    SMAs are TA-Lib's on both sides so cross detection sees identical floats.

    Sizes may differ by one share: on a reversal backtesting.py sizes the new position from the cash left
    after the closing trade's commission, while our kernel sizes from equity at the open before that
    commission (``units = equity / (open * (1 + commission))``, truncated); rounding to whole shares then
    lands one share apart on some trades. The two equity curves therefore drift apart slightly: the final
    equities agree within 1 % (a 460 % total return differs by about 2 percentage points, 0.4 % of final
    equity).
    """
    import backtesting.backtesting as bt_module
    import talib
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import GOOG

    monkeypatch.setattr(bt_module, "_tqdm", lambda seq, **_: seq)  # no progress bar

    class SmaCross(Strategy):
        n1 = 10
        n2 = 20

        def init(self) -> None:
            close = np.asarray(self.data.Close, dtype=np.float64)
            self.sma1 = self.I(talib.SMA, close, self.n1)
            self.sma2 = self.I(talib.SMA, close, self.n2)

        def next(self) -> None:
            if crossover(self.sma1, self.sma2):
                self.position.close()
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.position.close()
                self.sell()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(GOOG, SmaCross, commission=0.002, cash=10_000, finalize_trades=False).run()
    theirs = stats._trades

    # backtesting.py's account: margin=1 (no leverage), no borrow fee or financing
    cash_account = MarginConfig(initial_margin=1.0, borrow_rate=0.0, financing_rate=0.0)
    config = SimConfig(
        commission=0.002,
        slippage_bps=0.0,
        units="whole",
        initial_cash=10_000,
        margin=cash_account,
    )
    ours = run_backtest(goog, make_strategy("ma_cross", {"fast": 10, "slow": 20}), config)
    closed = ours.trades[ours.trades.exit_reason != "open"].reset_index(drop=True)

    assert len(closed) == len(theirs) > 50
    np.testing.assert_array_equal(closed.entry_bar.to_numpy(), theirs.EntryBar.to_numpy())
    np.testing.assert_array_equal(closed.exit_bar.to_numpy(), theirs.ExitBar.to_numpy())
    np.testing.assert_array_equal(np.sign(closed.units.to_numpy()), np.sign(theirs.Size.to_numpy()))
    np.testing.assert_allclose(
        closed.entry_price.to_numpy(), theirs.EntryPrice.to_numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        closed.exit_price.to_numpy(), theirs.ExitPrice.to_numpy(), rtol=1e-12
    )
    assert np.abs(closed.units.to_numpy() - theirs.Size.to_numpy()).max() <= 1.0
    # the one trade still open at the end is reported by us (reason "open") and not by them
    assert len(ours.trades) == len(theirs) + 1
    their_total = stats["Return [%]"] / 100.0
    ours_total = ours.metrics["total_return"]
    assert math.isclose(1.0 + ours_total, 1.0 + their_total, rel_tol=0.01)
    assert math.isclose(ours.metrics["final_equity"], stats["Equity Final [$]"], rel_tol=0.01)


# ---- reports ---------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_report_creates_pngs_csvs_and_metrics_json(goog: Bars, tmp_path: Path) -> None:
    result = run_backtest(
        goog, make_strategy("ma_cross", {"fast": 10, "slow": 20}), SimConfig(stop_loss=0.1)
    )
    out_dir = tmp_path / "run" / "report"
    paths = write_report(result, out_dir)
    assert set(paths) == {"equity_png", "returns_png", "trades_csv", "equity_csv", "metrics_json"}
    for key in ("equity_png", "returns_png"):
        data = paths[key].read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 1000
    trades = pd.read_csv(paths["trades_csv"])
    assert list(trades.columns) == TRADE_COLUMNS
    assert len(trades) == len(result.trades)
    assert set(trades.exit_reason) <= {"signal", "stop_loss", "take_profit", "open", "liquidation"}
    equity = pd.read_csv(paths["equity_csv"])
    assert list(equity.columns) == ["timestamp", "equity", "units", "target"]
    assert len(equity) == len(goog)
    np.testing.assert_allclose(equity.equity.to_numpy(), result.equity.to_numpy(), rtol=1e-12)
    meta = json.loads(paths["metrics_json"].read_text())
    expected_keys = {
        "symbol",
        "timeframe",
        "calendar",
        "periods_per_year",
        "strategy",
        "params",
        "start",
        "end",
        "bars",
        "trades",
        "sim_config",
        *METRIC_NAMES,
    }
    assert set(meta) == expected_keys
    assert meta["strategy"] == "ma_cross"
    assert meta["params"] == {"short": True, "fast": 10, "slow": 20}
    assert meta["sim_config"]["stop_loss"] == 0.1
    assert meta["final_equity"] == pytest.approx(result.metrics["final_equity"], rel=1e-12)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["equity_drawdown.png", "returns_hist.png", "trades.csv", "equity.csv", "metrics.json"]
    )
    assert not list(out_dir.rglob("*.tmp*"))
