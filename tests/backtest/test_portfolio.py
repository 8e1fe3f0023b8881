"""Portfolio backtests: one strategy on several symbols sharing one account."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.backtest.engine import run_backtest, strategy_targets
from raytrader.backtest.portfolio import align, run_portfolio_backtest
from raytrader.data import Bars
from raytrader.data.sources import load_bars, split_specs
from raytrader.errors import ConfigError
from raytrader.sim import SimConfig
from raytrader.strategies.base import make_strategy
from tests.support.cli import run_cli

MA = make_strategy("ma_cross", {"fast": 10, "slow": 30})


@pytest.fixture(scope="module")
def sp500() -> Bars:
    return load_bars("sp500")


def test_one_symbol_at_weight_one_is_the_single_backtest(goog: Bars) -> None:
    config = SimConfig(stop_loss=0.05)
    single = run_backtest(goog, MA, config)
    book = run_portfolio_backtest([goog], MA, config, [1.0])
    assert np.array_equal(book.equity.to_numpy(), single.equity.to_numpy())
    assert book.metrics == single.metrics
    pd.testing.assert_frame_equal(book.trades.drop(columns="symbol"), single.trades)


def test_two_symbols_share_the_account_over_their_common_period(goog: Bars, sp500: Bars) -> None:
    book = run_portfolio_backtest([goog, sp500], MA, SimConfig(), [0.6, 0.4])
    index, _ = align([goog, sp500])
    assert book.equity.index.equals(index)
    assert index[0] == max(goog.index[0], sp500.index[0])
    assert index[-1] == min(goog.index[-1], sp500.index[-1])
    assert set(book.trades["symbol"]) == {"GOOG", "SP500"}
    table = book.per_symbol
    assert list(table["symbol"]) == ["GOOG", "SP500"]
    # every trade belongs to one symbol: the symbols' P&L is the account's
    assert table["pnl"].sum() == pytest.approx(book.equity.iloc[-1] - 10_000.0, rel=1e-9)
    assert table["contribution"].sum() == pytest.approx(book.metrics["total_return"], rel=1e-9)
    # each symbol's targets are the strategy's on its own bars (no look at the other's, no gap
    # from the alignment in its indicators)
    own = strategy_targets(MA, sp500).reindex(index)
    np.testing.assert_array_equal(book.targets["SP500"].to_numpy(), own.to_numpy())


def test_a_universe_that_cannot_share_an_account_is_refused(goog: Bars) -> None:
    with pytest.raises(ConfigError, match="one timeframe; got GOOG 1d, EURUSD 1h"):
        run_portfolio_backtest([goog, load_bars("eurusd")], MA)
    later = load_bars("synthetic:n_bars=300,timeframe=1d,symbol=LATER")
    with pytest.raises(ConfigError, match=r"share no period: GOOG 2004-08-19\.\.2013-03-01, LATER"):
        run_portfolio_backtest([goog, later], MA)
    with pytest.raises(ConfigError, match=r"\['GOOG'\] appear more than once"):
        run_portfolio_backtest([goog, goog], MA)
    with pytest.raises(ConfigError, match="1 weight"):
        run_portfolio_backtest([goog, load_bars("sp500")], MA, weights=[1.0])


def test_data_specs_split_on_commas_that_start_a_new_spec() -> None:
    assert split_specs("goog,sp500") == ["goog", "sp500"]
    assert split_specs(" goog , synthetic:seed=1,symbol=A,timeframe=1d, sp500") == [
        "goog",
        "synthetic:seed=1,symbol=A,timeframe=1d",
        "sp500",
    ]
    assert split_specs("data/a.csv,data/b.csv") == ["data/a.csv", "data/b.csv"]
    with pytest.raises(ConfigError, match="no data set"):
        split_specs(" , ")


def test_the_cli_backtests_a_portfolio(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    eq = tmp_path / "equity.csv"
    code, out, err = run_cli(
        capsys, "backtest", "--data", "goog,sp500", "--weights", "0.5,0.5", "--json",
        "--equity-csv", str(eq), "--no-record",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["symbol"] == "GOOG,SP500"
    assert [s["symbol"] for s in summary["symbols"]] == ["GOOG", "SP500"]
    assert summary["trades"] == sum(s["trades"] for s in summary["symbols"])
    frame = pd.read_csv(eq)
    assert list(frame.columns) == [
        "timestamp", "equity", "units:GOOG", "units:SP500", "target:GOOG", "target:SP500",
    ]  # fmt: skip
    code, out, _ = run_cli(capsys, "backtest", "--data", "goog,sp500", "--no-record")
    assert code == 0
    assert "each symbol" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "goog,sp500", "--weights", "0.7,0.7"), "weights sum to 1.4"),
        (("--data", "goog,sp500", "--weights", "0.5,half"), "'half' is not a number"),
        (("--data", "goog,eurusd"), "one timeframe"),
        (("--data", "goog,sp500", "--symbol", "X"), "--symbol names one file"),
    ],
)
def test_the_cli_names_a_bad_portfolio(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = run_cli(capsys, "backtest", *args, "--no-record")
    assert code != 0
    assert message in err
