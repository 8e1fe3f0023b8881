"""Files, bundled data sets, the synthetic generator and the name dispatcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Calendar, load_bars
from raytrader.data.files import read_bars_file, write_bars_csv
from raytrader.data.synthetic import (
    REGIME_NAMES,
    SyntheticConfig,
    synthetic_bars,
    synthetic_regimes,
)
from raytrader.data.timeframe import Timeframe
from raytrader.errors import ConfigError, DataSourceError, DataValidationError, UnknownNameError


def test_csv_with_mixed_case_columns_and_iso_timestamps(tmp_path: Path) -> None:
    p = tmp_path / "btc.csv"
    p.write_text(
        "Timestamp,OPEN,High,low,Close,VOLUME\n"
        "2024-01-01T00:00:00Z,10,11,9,10.5,1\n"
        "2024-01-01T00:01:00+01:00,10,11,9,10.5,2\n"  # 23:01 UTC the day before
        "2024-01-01T00:02:00,10,11,9,10.5,3\n"  # naive = UTC
    )
    bars = read_bars_file(p, timeframe="1m", repair=True)
    assert bars.symbol == "BTC"
    assert [t.isoformat() for t in bars.index] == [
        "2023-12-31T23:01:00+00:00",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:02:00+00:00",
    ]
    assert bars.repair_report.sorted_rows


def test_csv_with_epoch_milliseconds(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(
        "open_time,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,7\n1704067260000,1,2,0.5,1.5,8\n"
    )
    bars = read_bars_file(p, symbol="X", timeframe="1m")
    assert bars.index[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    assert bars.frame["volume"].dtype == np.float64


def test_parquet_round_trip(tmp_path: Path) -> None:
    goog = load_bars("goog")
    p = tmp_path / "goog.parquet"
    goog.frame.to_parquet(p)
    back = read_bars_file(p, symbol="GOOG", timeframe="1d", calendar="equity")
    assert np.array_equal(back.frame.to_numpy(), goog.frame.to_numpy())
    assert back.index.equals(goog.index)


def test_csv_writer_round_trips(tmp_path: Path) -> None:
    eur = load_bars("eurusd")
    p = write_bars_csv(eur, tmp_path / "eur.csv")
    back = read_bars_file(p, symbol="EURUSD", timeframe="1h")
    assert np.array_equal(back.frame.to_numpy(), eur.frame.to_numpy())
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("content", "rule", "fragment"),
    [
        ("date,open,high,low,close\n2024-01-01,1,2,0.5,1\n", "columns", "volume"),
        ("open,high,low,close,volume\n1,2,0.5,1,3\n", "columns", "no time column"),
        ("date,open,high,low,close,volume\n2024-01-01,1,2,0.5,abc,3\n", "numeric", "close='abc'"),
        (
            "date,open,high,low,close,volume\nyesterday,1,2,0.5,1,3\n",
            "timestamp",
            "date='yesterday'",
        ),
    ],
)
def test_bad_files_name_file_rule_and_field(
    tmp_path: Path, content: str, rule: str, fragment: str
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(DataValidationError) as info:
        read_bars_file(p)
    assert info.value.rule == rule
    assert str(p) in str(info.value)
    assert fragment in str(info.value)


def test_missing_or_unsupported_file(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no such file"):
        read_bars_file(tmp_path / "nope.csv")
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(DataSourceError, match="unsupported file type"):
        read_bars_file(p)


def test_bundled_sets_have_the_documented_shape() -> None:
    goog, eur, spx = load_bars("goog"), load_bars("eurusd"), load_bars("sp500")
    assert (len(goog), goog.timeframe.name, goog.calendar) == (2148, "1d", Calendar.EQUITY)
    assert (len(eur), eur.timeframe.name, eur.calendar) == (5000, "1h", Calendar.FX)
    assert (len(spx), spx.timeframe.name, spx.calendar) == (5031, "1d", Calendar.EQUITY)
    assert goog.index[0] == pd.Timestamp("2004-08-19T00:00:00Z")
    assert spx.index[-1] == pd.Timestamp("2018-12-31T00:00:00Z")


def test_sp500_adj_close_equals_close_so_raw_ohlc_is_consistent() -> None:
    from arch.data import sp500

    raw = sp500.load()
    assert (raw["Adj Close"] == raw["Close"]).all()
    assert np.array_equal(
        load_bars("sp500").column("close"), raw["Close"].to_numpy(dtype=np.float64)
    )


def test_goog_equals_the_backtesting_package_data() -> None:
    from backtesting.test import GOOG

    assert np.array_equal(load_bars("goog").frame.to_numpy(), GOOG.to_numpy(dtype=np.float64))


def test_synthetic_is_seeded_and_valid_at_any_timeframe() -> None:
    a = synthetic_bars(SyntheticConfig(n_bars=5000, seed=11, timeframe="5m"))
    b = synthetic_bars(SyntheticConfig(n_bars=5000, seed=11, timeframe="5m"))
    c = synthetic_bars(SyntheticConfig(n_bars=5000, seed=12, timeframe="5m"))
    assert a.frame.equals(b.frame)
    assert not a.frame.equals(c.frame)
    assert (a.index[1] - a.index[0]) == pd.Timedelta("5min")
    assert (a.frame["volume"] > 0).all()


def test_synthetic_regimes_change_volatility() -> None:
    bars = synthetic_bars(SyntheticConfig(n_bars=200_000, seed=5, timeframe="1m"))
    r = np.diff(np.log(bars.column("close")))
    window_vol = pd.Series(r).rolling(2000).std().dropna()
    assert window_vol.max() / window_vol.min() > 3.0  # turbulent vs calm regimes


def test_synthetic_regimes_are_the_path_the_bars_were_drawn_from() -> None:
    config = SyntheticConfig(n_bars=20_000, seed=3, timeframe="1d")
    bars, regimes = synthetic_bars(config), synthetic_regimes(config)
    assert regimes.index.equals(bars.index)
    assert set(regimes.unique()) == set(REGIME_NAMES)
    assert synthetic_regimes(config).equals(regimes)
    # each regime's realized daily volatility is its own: calm < bull < bear < turbulent
    r = pd.Series(np.diff(np.log(bars.column("close"))), index=bars.index[1:])
    vol = r.groupby(regimes.iloc[1:]).std() * np.sqrt(365)
    assert vol["calm"] < vol["bull"] < vol["bear"] < vol["turbulent"]
    assert vol["calm"] == pytest.approx(0.08, rel=0.1)
    assert vol["turbulent"] == pytest.approx(0.70, rel=0.1)


def test_synthetic_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="n_bars"):
        synthetic_bars(n_bars=0)
    with pytest.raises(ConfigError, match="timezone"):
        synthetic_bars(start="2024-01-01T00:00:00")
    with pytest.raises(ConfigError, match="seeds"):
        load_bars("synthetic:seeds=3")


def test_load_bars_dispatches_by_name() -> None:
    assert load_bars("GOOG").symbol == "GOOG"
    syn = load_bars("synthetic:n_bars=100,timeframe=1h,seed=2,symbol=ABC")
    assert (len(syn), syn.symbol, syn.timeframe.name) == (100, "ABC", "1h")
    with pytest.raises(UnknownNameError, match="known: eurusd, goog, sp500, synthetic"):
        load_bars("nasdaq")


@pytest.mark.parametrize(
    ("tf", "seconds"), [("1m", 60), ("15m", 900), ("4h", 14400), ("1d", 86400), ("1w", 604800)]
)
def test_timeframes_parse(tf: str, seconds: int) -> None:
    assert Timeframe.parse(tf).seconds == seconds


@pytest.mark.parametrize("bad", ["0m", "5x", "h1", "", "1.5h"])
def test_bad_timeframes_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid timeframe"):
        Timeframe.parse(bad)


def test_periods_per_year_follow_the_calendar() -> None:
    assert Timeframe.parse("1d").periods_per_year("equity") == 252
    assert Timeframe.parse("1h").periods_per_year("fx") == 260 * 24
    assert Timeframe.parse("1m").periods_per_year("crypto") == 365 * 24 * 60
    assert Timeframe.parse("1h").periods_per_year("equity") == 252 * 6.5


def test_a_file_without_a_timeframe_gets_its_most_common_spacing(tmp_path: Path) -> None:
    for tf in ("5m", "1h", "4h"):
        bars = synthetic_bars(SyntheticConfig(n_bars=300, timeframe=tf, seed=1))
        path = tmp_path / f"syn_{tf}.csv"
        write_bars_csv(bars, path)
        assert load_bars(str(path)).timeframe.name == tf
        assert load_bars(str(path), timeframe="1d").timeframe.name == "1d"  # explicit wins
    goog = load_bars("goog")  # weekdays only, with holidays: still daily
    write_bars_csv(goog, tmp_path / "goog.csv")
    assert load_bars(str(tmp_path / "goog.csv")).timeframe.name == "1d"
    idx = pd.DatetimeIndex(["2024-01-01 00:00:00", "2024-01-01 00:00:30"], tz="UTC")
    with pytest.raises(ConfigError, match="30 s apart"):
        Timeframe.infer(idx, "x.csv")
    with pytest.raises(ConfigError, match="fewer than two bars"):
        Timeframe.infer(idx[:1], "x.csv")


# ------------------------------------------------------------------------------ calendars, ranges
def _write(path: Path, index: pd.DatetimeIndex) -> Path:
    n = len(index)
    close = 100.0 + np.cumsum(np.random.default_rng(1).normal(0, 1, n)) * 0.1
    frame = pd.DataFrame(
        {
            "timestamp": [t.isoformat() for t in index],
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 1000.0,
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_a_weekday_only_daily_csv_is_equity_with_252_bars_a_year(tmp_path: Path) -> None:
    days = pd.bdate_range("2020-01-01", periods=600, tz="UTC")
    bars = load_bars(str(_write(tmp_path / "stock.csv", days)))
    assert bars.calendar is Calendar.EQUITY
    assert bars.periods_per_year == 252


def test_a_24_7_hourly_file_is_crypto_with_8760_bars_a_year(tmp_path: Path) -> None:
    hours = pd.date_range("2024-01-01", periods=24 * 30, freq="1h", tz="UTC")
    bars = load_bars(str(_write(tmp_path / "btc.csv", hours)))
    assert bars.calendar is Calendar.CRYPTO
    assert bars.periods_per_year == 8760


def test_fx_hours_from_sunday_evening_to_friday_evening_are_fx(tmp_path: Path) -> None:
    hours = pd.date_range("2024-01-01", periods=24 * 60, freq="1h", tz="UTC")
    dow, hour = hours.dayofweek, hours.hour
    open_ = ~((dow == 5) | ((dow == 4) & (hour >= 21)) | ((dow == 6) & (hour < 21)))
    bars = load_bars(str(_write(tmp_path / "eurusd.csv", hours[open_])))
    assert bars.calendar is Calendar.FX
    assert bars.periods_per_year == 260 * 24


def test_weekday_round_the_clock_hours_are_fx_and_a_session_is_equity(tmp_path: Path) -> None:
    hours = pd.date_range("2024-01-01", periods=24 * 60, freq="1h", tz="UTC")
    weekdays = hours[hours.dayofweek < 5]
    assert load_bars(str(_write(tmp_path / "fx.csv", weekdays))).calendar is Calendar.FX
    session = weekdays[(weekdays.hour >= 14) & (weekdays.hour < 21)]
    assert load_bars(str(_write(tmp_path / "aapl.csv", session))).calendar is Calendar.EQUITY


def test_the_bundled_sets_keep_their_calendar_and_inference_agrees() -> None:
    from raytrader.data.timeframe import infer_calendar

    for name, expected in (("goog", "equity"), ("eurusd", "fx"), ("sp500", "equity")):
        bars = load_bars(name)
        assert bars.calendar.value == expected
        assert infer_calendar(bars.index, bars.timeframe).value == expected


def test_goog_as_a_csv_gives_the_same_metrics_as_the_bundled_set(tmp_path: Path) -> None:
    from raytrader.backtest.engine import run_backtest
    from raytrader.strategies.base import make_strategy

    goog = load_bars("goog")
    path = write_bars_csv(goog, tmp_path / "goog.csv")
    from_file = load_bars(str(path))
    assert from_file.calendar is Calendar.EQUITY
    strategy = make_strategy("ma_cross", {"fast": 10, "slow": 20})
    a = run_backtest(goog, strategy).summary()
    b = run_backtest(from_file, strategy).summary()
    assert b["symbol"] == "GOOG"
    assert {k: v for k, v in a.items() if k != "symbol"} == {
        k: v for k, v in b.items() if k != "symbol"
    }
    assert a["periods_per_year"] == 252


def test_the_calendar_can_be_overridden_for_any_source(tmp_path: Path) -> None:
    assert load_bars("goog", calendar="crypto").periods_per_year == 365
    assert load_bars("goog", calendar="auto").calendar is Calendar.EQUITY
    path = write_bars_csv(load_bars("goog"), tmp_path / "goog.csv")
    assert load_bars(str(path), calendar="fx").calendar is Calendar.FX
    with pytest.raises(ConfigError, match="unknown calendar 'nyse'"):
        load_bars("goog", calendar="nyse")


def test_start_and_end_select_bars_in_a_half_open_range() -> None:
    bars = load_bars("goog", start="2010-01-01", end="2011-01-01")
    assert bars.index[0] == pd.Timestamp("2010-01-04", tz="UTC")
    assert bars.index[-1] == pd.Timestamp("2010-12-31", tz="UTC")
    assert bars.calendar is Calendar.EQUITY
    assert len(load_bars("goog", end="2004-08-20")) == 1  # end is exclusive
    with pytest.raises(DataSourceError, match=r"no bars in \[2020-01-01.*the data runs 2004-08-19"):
        load_bars("goog", start="2020-01-01")
    with pytest.raises(ConfigError, match="is not before end"):
        load_bars("goog", start="2012-01-01", end="2011-01-01")
    with pytest.raises(ConfigError, match="start 'yesterday' is not an ISO-8601"):
        load_bars("goog", start="yesterday")
