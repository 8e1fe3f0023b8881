"""The ccxt connector against a local server speaking Binance's REST wire format.

The real ccxt library does all the HTTP work; ``api_urls_override`` points it at
:class:`~tests.support.replay_server.ReplayServer` on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raytrader.data.ccxt_source import (
    CcxtConfig,
    create_exchange,
    fetch_ohlcv,
    poll_closed_candles,
)
from raytrader.errors import ConfigError, DataSourceError, UnknownNameError
from tests.support.replay_server import (
    ReplayServer,
    binance_klines_fixture,
    install_binance,
    shift_klines,
)

HOUR_MS = 3_600_000
FIXTURE = binance_klines_fixture()
T0 = datetime.fromtimestamp(FIXTURE[0][0] / 1000, tz=UTC)
T_END = datetime.fromtimestamp(FIXTURE[-1][0] / 1000, tz=UTC) + timedelta(hours=1)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        install_binance(srv)
        yield srv


def config(server: ReplayServer, **overrides: Any) -> CcxtConfig:
    fields: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "since": T0,
        "until": T_END,
        "limit": 100,
        "market_types": ["spot"],
        "max_retries": 3,
        "backoff_seconds": 0.01,
        "rate_limit_ms": 1,
        "timeout_ms": 5_000,
        "api_urls_override": server.base_url,
    }
    fields.update(overrides)
    return CcxtConfig.parse(fields)


def expected_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """What the connector must return for these wire rows: open time → float OHLCV."""
    index = pd.to_datetime([int(r[0]) for r in rows], unit="ms", utc=True)
    values = np.array([[float(v) for v in r[1:6]] for r in rows], dtype=np.float64)
    return pd.DataFrame(
        values,
        index=pd.DatetimeIndex(index, name="timestamp"),
        columns=["open", "high", "low", "close", "volume"],
    )


def assert_same(frame: pd.DataFrame, rows: list[list[Any]]) -> None:
    expected = expected_frame(rows)
    pd.testing.assert_index_equal(frame.index.as_unit("ms"), expected.index.as_unit("ms"))
    np.testing.assert_array_equal(frame.to_numpy(), expected.to_numpy())
    assert list(frame.columns) == list(expected.columns)


def assert_loopback_only(server: ReplayServer) -> None:
    assert server.requests, "no request reached the replay server"
    assert {r.host for r in server.requests} == {f"127.0.0.1:{server.port}"}
    assert {r.client_ip for r in server.requests} == {"127.0.0.1"}


def klines_starts(server: ReplayServer) -> list[int]:
    return [int(r.query["startTime"]) for r in server.requests_to("/api/v3/klines")]


# -- pagination ----------------------------------------------------------------------------------


def test_pagination_returns_every_candle_once_equal_to_fixture(server: ReplayServer) -> None:
    bars = fetch_ohlcv(config(server))

    assert len(bars) == len(FIXTURE) == 300
    assert_same(bars.frame, FIXTURE)
    assert bars.index.is_unique
    assert bars.symbol == "BTC/USDT"
    assert bars.timeframe.name == "1h"
    assert bars.calendar == "crypto"
    assert bars.source == "ccxt:binance"
    # three pages of 100, each continuing one hour after the previous page's last candle
    t0 = int(FIXTURE[0][0])
    assert klines_starts(server) == [t0, t0 + 100 * HOUR_MS, t0 + 200 * HOUR_MS]
    assert all(r.query["limit"] == "100" for r in server.requests_to("/api/v3/klines"))
    assert [r.path for r in server.requests].count("/api/v3/exchangeInfo") == 1
    assert_loopback_only(server)


def test_without_until_paginates_until_exchange_has_nothing_new(server: ReplayServer) -> None:
    bars = fetch_ohlcv(config(server, until=None))

    assert_same(bars.frame, FIXTURE)
    # three full pages, then one empty page tells the connector there is nothing more
    assert len(klines_starts(server)) == 4


def test_window_bounds_are_half_open() -> None:
    with ReplayServer() as srv:
        install_binance(srv)
        since = T0 + timedelta(hours=5, minutes=30)  # not on a candle boundary
        until = T0 + timedelta(hours=250)
        bars = fetch_ohlcv(config(srv, since=since, until=until))
    assert bars.index[0] == pd.Timestamp(T0 + timedelta(hours=6))
    assert bars.index[-1] == pd.Timestamp(until - timedelta(hours=1))
    assert_same(bars.frame, FIXTURE[6:250])


def test_overlapping_pages_are_deduplicated() -> None:
    with ReplayServer() as srv:
        install_binance(srv, overlap=7)  # every page repeats the 7 candles before startTime
        bars = fetch_ohlcv(config(srv, limit=50))
        starts = klines_starts(srv)
    assert_same(bars.frame, FIXTURE)
    assert len(starts) >= 6  # overlaps made the pages shorter in new candles, not the result


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_retries_after_two_injected_failures(server: ReplayServer, status: int) -> None:
    server.fail_next(2, status, path_prefix="/api/v3/klines")
    bars = fetch_ohlcv(config(server))

    assert_same(bars.frame, FIXTURE)
    t0 = int(FIXTURE[0][0])
    # the first page was asked three times (two failures), then pagination went on
    assert klines_starts(server) == [t0, t0, t0, t0 + 100 * HOUR_MS, t0 + 200 * HOUR_MS]


def test_market_load_is_retried_too(server: ReplayServer) -> None:
    server.fail_next(2, 503, path_prefix="/api/v3/exchangeInfo")
    bars = fetch_ohlcv(config(server))
    assert len(bars) == 300
    assert len(server.requests_to("/api/v3/exchangeInfo")) == 3


def test_too_many_failures_raise_data_source_error(server: ReplayServer) -> None:
    server.fail_next(100, 503, path_prefix="/api/v3/klines")
    with pytest.raises(DataSourceError) as info:
        fetch_ohlcv(config(server, max_retries=2))
    msg = str(info.value)
    assert "binance" in msg
    assert "BTC/USDT" in msg
    assert "3 attempt(s)" in msg
    assert "ExchangeNotAvailable" in msg  # ccxt's mapping of HTTP 503
    assert len(server.requests_to("/api/v3/klines")) == 3


def test_backoff_doubles_between_attempts(server: ReplayServer) -> None:
    server.fail_next(3, 503, path_prefix="/api/v3/klines")
    fetch_ohlcv(config(server, backoff_seconds=0.04, max_backoff_seconds=1.0))
    attempts = [r.at for r in server.requests_to("/api/v3/klines")][:4]
    gaps = np.diff(attempts)
    assert gaps[0] >= 0.04 * 0.95
    assert gaps[1] >= 0.08 * 0.95
    assert gaps[2] >= 0.16 * 0.95


def test_non_transient_error_is_not_retried() -> None:
    # a 400 "Invalid symbol." from the exchange: ccxt raises BadSymbol; retrying cannot help
    with ReplayServer() as srv:
        install_binance(srv, klines={("ETHUSDT", "1h"): FIXTURE})
        srv.fail_next(
            1, 400, body={"code": -1121, "msg": "Invalid symbol."}, path_prefix="/api/v3/klines"
        )
        with pytest.raises(DataSourceError, match=r"BadSymbol|BadRequest"):
            fetch_ohlcv(config(srv, symbol="ETH/USDT"))
        assert len(srv.requests_to("/api/v3/klines")) == 1


# -- rate limit ----------------------------------------------------------------------------------


def test_requests_respect_the_rate_limit(server: ReplayServer) -> None:
    server.fail_next(1, 503, path_prefix="/api/v3/klines")
    fetch_ohlcv(config(server, rate_limit_ms=60, backoff_seconds=0.0))
    times = [r.at for r in server.requests]
    assert len(times) == 5  # exchangeInfo, a failed page, its retry, 2 more pages
    # the client spaces call starts; arrival times at the server jitter by a few ms either way
    assert times[-1] - times[0] >= 4 * 0.060 * 0.9
    assert min(np.diff(times)) >= 0.060 * 0.5


# -- closed candles ------------------------------------------------------------------------------


def test_unclosed_last_candle_is_dropped() -> None:
    now = datetime.now(UTC)
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    rows = shift_klines(FIXTURE[:50], int((current_hour - timedelta(hours=49)).timestamp() * 1000))
    assert rows[-1][0] == int(current_hour.timestamp() * 1000)  # the candle still forming
    with ReplayServer() as srv:
        install_binance(srv, klines={("BTCUSDT", "1h"): rows})
        bars = fetch_ohlcv(
            config(srv, since=datetime.fromtimestamp(rows[0][0] / 1000, tz=UTC), until=None)
        )
        served_up_to_now = [
            r for r in srv.requests_to("/api/v3/klines") if "endTime" not in r.query
        ]
    assert len(bars) == 49
    assert_same(bars.frame, rows[:49])
    assert bars.index[-1] == pd.Timestamp(current_hour - timedelta(hours=1))
    # the exchange did send the forming candle (one page without endTime); the connector dropped it
    assert len(served_up_to_now) == 1


class FakeTime:
    """A clock and a sleep that advances it: lets a test drive a live poll loop instantly."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def ms(self) -> int:
        return int(self.now.timestamp() * 1000)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_poll_yields_each_candle_once_as_it_closes() -> None:
    fake = FakeTime(T0 + timedelta(hours=10, minutes=30))  # candle 10 is forming
    with ReplayServer() as srv:
        install_binance(srv, now_ms=fake.ms)
        polls = poll_closed_candles(
            config(srv, until=None),
            max_polls=4,
            grace_seconds=2.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        batches = list(polls)
        assert_loopback_only(srv)
    assert [len(b) for b in batches] == [10, 1, 1, 1]
    got = pd.concat([b.frame for b in batches])
    assert_same(got, FIXTURE[:13])
    # after the first poll it waited the 30 minutes until candle 10 closed, plus the grace
    assert fake.sleeps[0] == pytest.approx(30 * 60 + 2.0)
    assert fake.sleeps[1:] == [pytest.approx(3600.0)] * 2


def test_poll_yields_nothing_while_the_exchange_has_nothing_new() -> None:
    # the exchange lags: it has candles 0-3 only, although by the clock 4 and 5 have closed too
    fake = FakeTime(T0 + timedelta(hours=6))
    with ReplayServer() as srv:
        install_binance(srv, klines={("BTCUSDT", "1h"): FIXTURE[:4]}, now_ms=fake.ms)
        polls = poll_closed_candles(
            config(srv, until=None),
            max_polls=3,
            min_wait_seconds=5.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        batches = list(polls)
        starts = klines_starts(srv)
    assert [len(b) for b in batches] == [4]
    assert_same(batches[0].frame, FIXTURE[:4])
    # later polls ask only after the last candle seen, and wait the minimum between polls
    t4 = int(FIXTURE[4][0])
    assert starts == [int(FIXTURE[0][0]), t4, t4, t4]
    assert fake.sleeps == [5.0, 5.0]


def test_poll_stops_at_until(server: ReplayServer) -> None:
    fake = FakeTime(T_END + timedelta(days=1))
    polls = poll_closed_candles(
        config(server, until=T0 + timedelta(hours=20)), clock=fake.clock, sleep=fake.sleep
    )
    batches = list(polls)
    assert [len(b) for b in batches] == [20]


# -- configuration and errors --------------------------------------------------------------------


def test_override_rebases_every_api_url_and_refuses_other_hosts(server: ReplayServer) -> None:
    cfg = config(server)
    exchange = create_exchange(cfg)
    assert all(url.startswith(server.base_url + "/") for url in exchange.urls["api"].values()), (
        exchange.urls["api"]
    )
    assert exchange.urls["api"]["public"] == f"{server.base_url}/api/v3"
    # a URL that escaped the override is refused loudly, before any connection is made
    exchange.urls["api"]["public"] = "https://api.binance.com/api/v3"
    with pytest.raises(DataSourceError, match=r"refusing to contact https://api\.binance\.com"):
        exchange.load_markets()
    assert server.requests == []


def test_unknown_exchange() -> None:
    with pytest.raises(UnknownNameError, match="unknown ccxt exchange 'binanse'"):
        create_exchange(CcxtConfig(exchange="binanse", symbol="BTC/USDT", since=T0))


def test_unknown_symbol_is_a_config_error_with_suggestions(server: ReplayServer) -> None:
    with pytest.raises(ConfigError, match=r"no market 'BTC/USDX'.*BTC/USDT"):
        fetch_ohlcv(config(server, symbol="BTC/USDX"))


def test_unsupported_timeframe_is_a_config_error(server: ReplayServer) -> None:
    with pytest.raises(ConfigError, match="no '2w' candles"):
        fetch_ohlcv(config(server, timeframe="2w"))


def test_no_closed_candle_in_window_raises(server: ReplayServer) -> None:
    with pytest.raises(DataSourceError, match="no closed candles"):
        fetch_ohlcv(config(server, since="2023-01-01", until="2023-02-01"))


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ],
)
def test_config_instants_are_utc(since: str, expected: datetime) -> None:
    cfg = CcxtConfig.parse({"symbol": "BTC/USDT", "since": since})
    assert cfg.since == expected
    assert cfg.since.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "fields",
    [
        {"since": datetime(2024, 1, 1)},  # noqa: DTZ001 - the naive datetime is the point
        {"since": "2024-01-01T00:00:00"},
        {"since": "2024-02-01", "until": "2024-01-01"},
        {"since": "2024-01-01", "timeframe": "1x"},
        {"since": "2024-01-01", "api_urls_override": "127.0.0.1:8080"},
        {"since": "2024-01-01", "limit": 0},
        {"since": "2024-01-01", "surprise": 1},
    ],
)
def test_config_rejects_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        CcxtConfig.parse({"symbol": "BTC/USDT", **fields})
