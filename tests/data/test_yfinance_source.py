"""The yfinance connector against a local server speaking Yahoo's chart API wire format.

The real yfinance library does all the work (cookie, crumb, timezone lookup, chart request,
parsing, adjustment); ``base_url_override`` hands it a session whose requests for ``*.yahoo.com``
reach :class:`~tests.support.replay_server.ReplayServer` on 127.0.0.1 instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from raytrader.data.timeframe import Timeframe
from raytrader.data.yfinance_source import (
    YFinanceConfig,
    fetch_yfinance,
    is_yahoo_host,
    to_contract_frame,
)
from raytrader.errors import ConfigError, DataSourceError
from tests.support.replay_server import ReplayServer, install_yahoo, yahoo_chart_fixture

NY = ZoneInfo("America/New_York")
CHART = yahoo_chart_fixture()
RESULT = CHART["chart"]["result"][0]
QUOTE = RESULT["indicators"]["quote"][0]
ADJCLOSE = np.array(RESULT["indicators"]["adjclose"][0]["adjclose"], dtype=np.float64)
SESSION_DATES = [datetime.fromtimestamp(t, tz=NY).date() for t in RESULT["timestamp"]]


@pytest.fixture(scope="module", autouse=True)
def yfinance_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep yfinance's timezone/cookie caches out of the user's home (its public setting; it is
    process-wide and must be set before yfinance first uses a cache)."""
    import yfinance as yf

    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-cache")))


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        install_yahoo(srv)
        yield srv


def config(server: ReplayServer, **overrides: Any) -> YFinanceConfig:
    fields: dict[str, Any] = {
        "ticker": "AAPL",
        "interval": "1d",
        "start": "2024-01-01",
        "end": "2024-03-01",
        "auto_adjust": False,
        "timeout_seconds": 5,
        "base_url_override": server.base_url,
    }
    fields.update(overrides)
    return YFinanceConfig.parse(fields)


def fixture_frame(adjusted: bool) -> pd.DataFrame:
    """The recorded chart as contract bars: session date at 00:00 UTC, float64 OHLCV."""
    cols = {c: np.array(QUOTE[c], dtype=np.float64) for c in ("open", "high", "low", "close")}
    if adjusted:  # Yahoo's adjclose / close scales open, high, low and close
        ratio = ADJCLOSE / cols["close"]
        cols = {c: v * ratio for c, v in cols.items()}
    index = pd.DatetimeIndex([pd.Timestamp(d, tz="UTC") for d in SESSION_DATES], name="timestamp")
    return pd.DataFrame(
        {**cols, "volume": np.array(QUOTE["volume"], dtype=np.float64)}, index=index
    )


def assert_loopback_only(server: ReplayServer) -> None:
    assert server.requests, "no request reached the replay server"
    assert {r.host for r in server.requests} == {f"127.0.0.1:{server.port}"}
    # every request was meant for a Yahoo host and was re-addressed to the replay server
    assert all(r.forwarded_host and is_yahoo_host(r.forwarded_host) for r in server.requests)


def test_fetch_returns_bars_equal_to_fixture(server: ReplayServer) -> None:
    bars = fetch_yfinance(config(server))

    expected = fixture_frame(adjusted=False)
    assert len(bars) == len(expected) == 41
    pd.testing.assert_index_equal(bars.index.as_unit("s"), expected.index.as_unit("s"))
    np.testing.assert_array_equal(bars.frame.to_numpy(), expected.to_numpy())
    assert list(bars.frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in bars.frame.dtypes)
    assert str(bars.index.tz) == "UTC"
    assert bars.index[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert bars.symbol == "AAPL"
    assert bars.timeframe.name == "1d"
    assert bars.calendar == "equity"
    assert bars.source == "yfinance:AAPL"
    chart_requests = server.requests_to("/v8/finance/chart/AAPL")
    window = [r for r in chart_requests if "period1" in r.query]
    assert len(window) == 1
    # plain dates are midnights in the exchange's timezone
    assert int(window[0].query["period1"]) == datetime(2024, 1, 1, tzinfo=NY).timestamp()
    assert int(window[0].query["period2"]) == datetime(2024, 3, 1, tzinfo=NY).timestamp()
    assert window[0].query["interval"] == "1d"
    assert_loopback_only(server)


def test_auto_adjust_scales_prices_by_adjclose(server: ReplayServer) -> None:
    bars = fetch_yfinance(config(server, auto_adjust=True))

    expected = fixture_frame(adjusted=True)
    np.testing.assert_allclose(bars.frame.to_numpy(), expected.to_numpy(), rtol=1e-12)
    raw = fixture_frame(adjusted=False)
    ex_date = pd.Timestamp("2024-02-09", tz="UTC")
    before = bars.index < ex_date
    # before the dividend prices are scaled down; from the ex-date on they are untouched
    assert (bars.frame["close"][before] < raw["close"][before]).all()
    np.testing.assert_array_equal(bars.frame[~before].to_numpy(), raw[~before].to_numpy())


def test_window_is_respected(server: ReplayServer) -> None:
    bars = fetch_yfinance(config(server, start="2024-02-01", end="2024-02-15"))
    assert bars.index[0] == pd.Timestamp("2024-02-01", tz="UTC")
    assert bars.index[-1] == pd.Timestamp("2024-02-14", tz="UTC")
    assert len(bars) == 10


def test_aware_datetimes_are_exact_instants(server: ReplayServer) -> None:
    start = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)
    end = datetime(2024, 2, 6, 0, 0, tzinfo=UTC)
    fetch_yfinance(config(server, start=start, end=end))
    window = [r for r in server.requests_to("/v8/finance/chart/AAPL") if "period1" in r.query]
    assert int(window[-1].query["period1"]) == start.timestamp()
    assert int(window[-1].query["period2"]) == end.timestamp()


def test_empty_yahoo_response_raises_clear_error(server: ReplayServer) -> None:
    with pytest.raises(DataSourceError) as info:
        fetch_yfinance(config(server, start="2023-01-01", end="2023-02-01"))
    msg = str(info.value)
    assert "yfinance:AAPL" in msg
    assert "2023-01-01" in msg
    assert "no bars" in msg
    assert_loopback_only(server)


def test_unknown_ticker_raises_clear_error(server: ReplayServer) -> None:
    with pytest.raises(DataSourceError) as info:
        fetch_yfinance(config(server, ticker="NOSUCH"))
    msg = str(info.value)
    assert "yfinance:NOSUCH" in msg
    assert "404 query2.finance.yahoo.com/v8/finance/chart/NOSUCH" in msg


def test_http_errors_raise_clear_error(server: ReplayServer) -> None:
    server.fail_next(10, 503, path_prefix="/v8/finance/chart/")
    with pytest.raises(DataSourceError) as info:
        fetch_yfinance(config(server))
    msg = str(info.value)
    assert "yfinance:AAPL" in msg
    assert "503 query2.finance.yahoo.com/v8/finance/chart/AAPL" in msg


def test_override_session_refuses_non_yahoo_hosts(server: ReplayServer) -> None:
    from raytrader.data.http_override import override_session

    session = override_session(server.base_url, rebase_host=is_yahoo_host)
    with pytest.raises(DataSourceError, match=r"refusing to contact https://example\.com"):
        session.get("https://example.com/anything", timeout=5)
    assert server.requests == []
    # a Yahoo URL is re-addressed to the replay server, path and query intact
    response = session.get("https://query1.finance.yahoo.com/v1/test/getcrumb?x=1", timeout=5)
    assert response.text == "replay-crumb"
    (req,) = server.requests
    assert (req.path, req.query, req.forwarded_host) == (
        "/v1/test/getcrumb",
        {"x": "1"},
        "query1.finance.yahoo.com",
    )


def test_intraday_bars_keep_their_instant_in_utc() -> None:
    index = pd.DatetimeIndex(
        [pd.Timestamp("2024-01-02 09:30", tz=NY), pd.Timestamp("2024-01-02 10:30", tz=NY)]
    )
    raw = pd.DataFrame(
        {
            "Open": [1.0, 2.0],
            "High": [2.0, 3.0],
            "Low": [0.5, 1.5],
            "Close": [1.5, 2.5],
            "Volume": [10, 20],
        },
        index=index,
    )
    frame = to_contract_frame(raw, Timeframe.parse("1h"))
    assert list(frame.index) == [
        pd.Timestamp("2024-01-02 14:30", tz="UTC"),
        pd.Timestamp("2024-01-02 15:30", tz="UTC"),
    ]
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame["volume"].dtype == np.float64


def test_daily_bars_are_stamped_at_utc_midnight_of_the_session() -> None:
    raw = pd.DataFrame(
        {"Open": [1.0], "High": [2.0], "Low": [0.5], "Close": [1.5], "Volume": [10]},
        index=pd.DatetimeIndex([pd.Timestamp("2024-07-01", tz="Asia/Tokyo")]),
    )
    frame = to_contract_frame(raw, Timeframe.parse("1d"))
    assert frame.index[0] == pd.Timestamp("2024-07-01", tz="UTC")


@pytest.mark.parametrize(
    ("interval", "expected"), [("1d", "1d"), ("1wk", "1w"), ("1h", "1h"), ("5m", "5m")]
)
def test_config_intervals(interval: str, expected: str) -> None:
    cfg = YFinanceConfig.parse({"ticker": "aapl", "interval": interval, "start": "2024-01-01"})
    assert cfg.interval == expected
    assert cfg.ticker == "AAPL"
    assert cfg.start == date(2024, 1, 1)


@pytest.mark.parametrize(
    "fields",
    [
        {"interval": "4h"},
        {"interval": "1x"},
        {"start": datetime(2024, 1, 1)},  # noqa: DTZ001 - the naive datetime is the point
        {"start": "2024-02-01", "end": "2024-01-01"},
        {"base_url_override": "localhost"},
        {"ticker": ""},
        {"surprise": True},
    ],
)
def test_config_rejects_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        YFinanceConfig.parse({"ticker": "AAPL", "start": "2024-01-01", **fields})


def _as_instrument(ticker: str, instrument: str, every_day: bool) -> dict[str, Any]:
    """The recorded chart re-labelled as another instrument in Yahoo's own wire format: its
    ``meta.instrumentType`` (and, for a 24/7 market, one bar every calendar day in UTC)."""
    import copy

    chart = copy.deepcopy(CHART)
    result = chart["chart"]["result"][0]
    meta = result["meta"]
    meta.update(symbol=ticker, instrumentType=instrument)
    if every_day:
        meta.update(exchangeTimezoneName="UTC", timezone="UTC", gmtoffset=0)
        first = int(pd.Timestamp("2024-01-02", tz="UTC").timestamp())
        result["timestamp"] = [first + 86_400 * i for i in range(len(result["timestamp"]))]
    return chart


@pytest.mark.parametrize(
    ("ticker", "instrument", "every_day", "calendar", "ppy"),
    [
        ("BTC-USD", "CRYPTOCURRENCY", True, "crypto", 365),
        ("EURUSD=X", "CURRENCY", False, "fx", 260),
        ("SPY", "ETF", False, "equity", 252),
        ("ES=F", "FUTURE", True, "crypto", 365),  # no rule for futures: inferred from the bars
    ],
)
def test_the_calendar_follows_yahoos_instrument_type(
    ticker: str, instrument: str, every_day: bool, calendar: str, ppy: int
) -> None:
    with ReplayServer() as srv:
        install_yahoo(srv, charts={ticker: _as_instrument(ticker, instrument, every_day)})
        cfg = config(srv, ticker=ticker, start="2024-01-01", end="2024-04-01")
        bars = fetch_yfinance(cfg)
        assert bars.calendar == calendar
        assert bars.periods_per_year == ppy
        override = fetch_yfinance(cfg.model_copy(update={"calendar": "equity"}))
        assert override.calendar == "equity"
