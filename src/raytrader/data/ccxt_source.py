"""OHLCV candles from any exchange ccxt supports, as validated :class:`~raytrader.data.bars.Bars`.

``fetch_ohlcv(CcxtConfig(exchange="binance", symbol="BTC/USDT", timeframe="1h",
since="2024-01-01T00:00:00Z", until="2024-02-01T00:00:00Z"))``

Behaviour
---------
**Pagination.** Exchanges cap how many candles one request returns (Binance: 1000). Starting at
``since``, :func:`fetch_ohlcv` asks for up to ``limit`` candles, then continues from the open time
of the last candle received plus one timeframe, until the cursor reaches ``until`` (default: the
last closed candle) or the exchange returns nothing new (an empty page, or a page with no candle at
or after the cursor).
Pages that overlap are deduplicated by open time (the first copy wins), so every candle appears
exactly once, in order. Candles opening before ``since`` or at/after ``until`` are dropped.

**Rate limit.** Two limits apply. ccxt's own throttle is always on (``enableRateLimit``): before
each HTTP request it waits ``rateLimit × cost`` milliseconds since the previous one, using the
exchange's published endpoint weights (Binance spot klines: 50 ms × 0.4). On top of that,
``rate_limit_ms`` (when set) keeps the starts of two consecutive calls to the exchange — a market
load, a candle page, a retry — at least that many milliseconds apart, for exchanges or API keys
with stricter limits than ccxt assumes.

**Retries.** Transient failures (``ccxt.NetworkError`` and its subclasses ``RequestTimeout``,
``ExchangeNotAvailable``, ``DDoSProtection``/``RateLimitExceeded`` — what HTTP 429/5xx and dropped
connections become) are retried up to ``max_retries`` times, sleeping ``backoff_seconds × 2**n``
(capped at ``max_backoff_seconds``) before retry ``n+1``. When retries run out a
:class:`~raytrader.errors.DataSourceError` names the exchange, symbol and the last error. Any other
ccxt error (bad symbol, exchange-side rejection) is not retried and becomes a ``DataSourceError``
at once.

**Closed candles only.** A candle whose close time (open time + timeframe) lies after the moment its
page was requested was still forming when the exchange answered; it is dropped (exchanges such as
Binance do return the current, unfinished candle). :func:`poll_closed_candles` picks it up once it
has closed. The rule uses this machine's UTC clock.

**Pointing ccxt at another host (tests, proxies, mirrors).** ``api_urls_override`` is a base URL
such as ``http://127.0.0.1:8080``. Every URL in the exchange's ``urls['api']`` then has its scheme
and host replaced by the override's (the path is kept, after the override's own path if any), so
``https://api.binance.com/api/v3/klines`` becomes ``http://127.0.0.1:8080/api/v3/klines``. ccxt is
also given an HTTP session that refuses — with a ``DataSourceError``, before any connection is
made — to contact any host other than the override's, so nothing can silently reach the real
exchange. This is how the test-suite runs the real ccxt client against a local replay server.

**Markets.** ccxt loads the exchange's market list before the first candle request. Many exchanges
(Binance, Bybit, OKX, Gate, Bitget, MEXC, KuCoin, …) load several market types by default, one
request each; ``market_types`` (e.g. ``["spot"]``) restricts that through ccxt's
``options['fetchMarkets']['types']``.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, Field, ValidationInfo, field_validator, model_validator

from raytrader.config import StrictConfig
from raytrader.data.bars import Bars, make_frame
from raytrader.data.http_override import check_base_url, override_session, rebase_urls
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import ConfigError, DataSourceError, UnknownNameError

T = TypeVar("T")
Clock = Callable[[], datetime]

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _aware_utc(value: object, field: str) -> object:
    """Before-validator: date-only strings/dates mean 00:00 UTC; naive datetimes are refused."""
    if isinstance(value, str) and _DATE_ONLY.match(value.strip()):
        return f"{value.strip()}T00:00:00+00:00"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"{field} {value.isoformat()} is timezone-naive; give a UTC time "
                "(e.g. datetime(2024, 1, 1, tzinfo=UTC) or '2024-01-01T00:00:00Z')"
            )
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


class CcxtConfig(StrictConfig):
    """What to download from a ccxt exchange, and how patiently.

    ``since``/``until`` are UTC instants: aware datetimes, ISO-8601 strings with an offset
    (``2024-01-01T00:00:00Z``) or plain dates (``2024-01-01`` = 00:00 UTC). The result holds the
    closed candles with ``since <= open time < until`` (``until`` defaults to now).
    """

    exchange: str = "binance"
    symbol: str = Field(min_length=1)
    timeframe: str = "1h"
    since: AwareDatetime
    until: AwareDatetime | None = None
    #: candles asked for per request (exchanges clamp this to their own maximum)
    limit: int = Field(default=1000, ge=1, le=100_000)
    #: retries of a transient failure before giving up (0 = try once)
    max_retries: int = Field(default=5, ge=0, le=100)
    #: sleep before retry n+1 is ``backoff_seconds * 2**n`` ...
    backoff_seconds: float = Field(default=1.0, ge=0.0)
    #: ... but never more than this
    max_backoff_seconds: float = Field(default=60.0, ge=0.0)
    #: least milliseconds between the starts of two calls to the exchange (on top of ccxt's own
    #: per-endpoint throttle); ``None`` = ccxt's throttle only
    rate_limit_ms: float | None = Field(default=None, ge=0.0)
    #: HTTP timeout of one request, milliseconds
    timeout_ms: int = Field(default=30_000, ge=1)
    #: market types ccxt loads (``options['fetchMarkets']['types']``); ``None`` = exchange default
    market_types: tuple[str, ...] | None = None
    #: base URL replacing the host of every public/private REST endpoint (tests, mirrors)
    api_urls_override: str | None = None

    @field_validator("exchange")
    @classmethod
    def _exchange_id(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return Timeframe.parse(value).name

    @field_validator("since", "until", mode="before")
    @classmethod
    def _instants(cls, value: object, info: ValidationInfo) -> object:
        return _aware_utc(value, str(info.field_name))

    @field_validator("since", "until")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    @field_validator("api_urls_override")
    @classmethod
    def _override(cls, value: str | None) -> str | None:
        return check_base_url(value, "api_urls_override")

    @model_validator(mode="after")
    def _range(self) -> CcxtConfig:
        if self.until is not None and self.until <= self.since:
            raise ValueError(
                f"until ({self.until.isoformat()}) must be after since ({self.since.isoformat()})"
            )
        return self

    @property
    def tf(self) -> Timeframe:
        return Timeframe.parse(self.timeframe)

    @property
    def source(self) -> str:
        return f"ccxt:{self.exchange}"


# ----------------------------------------------------------------------------------------------
# exchange construction and calls
# ----------------------------------------------------------------------------------------------


def create_exchange(config: CcxtConfig) -> Any:
    """A ccxt exchange instance configured per ``config`` (markets not loaded yet)."""
    import ccxt

    if config.exchange not in ccxt.exchanges:
        raise UnknownNameError("ccxt exchange", config.exchange, list(ccxt.exchanges))
    settings: dict[str, Any] = {"enableRateLimit": True, "timeout": config.timeout_ms}
    if config.market_types is not None:
        settings["options"] = {"fetchMarkets": {"types": list(config.market_types)}}
    if config.api_urls_override is not None:
        settings["session"] = override_session(config.api_urls_override)
    exchange = getattr(ccxt, config.exchange)(settings)
    if config.api_urls_override is not None:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], config.api_urls_override)
    if not exchange.has.get("fetchOHLCV"):
        raise ConfigError(f"ccxt exchange {config.exchange!r} does not provide OHLCV candles")
    timeframes = exchange.timeframes or {}
    if timeframes and config.timeframe not in timeframes:
        raise ConfigError(
            f"{config.source} has no {config.timeframe!r} candles; it offers "
            f"{', '.join(timeframes)}"
        )
    return exchange


class _Pacer:
    """Keeps the starts of consecutive calls at least ``interval_s`` apart."""

    def __init__(self, interval_ms: float | None) -> None:
        self.interval_s = (interval_ms or 0.0) / 1000.0
        self.last: float | None = None

    def wait(self) -> None:
        if self.last is not None and self.interval_s > 0:
            delay = self.last + self.interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.last = time.monotonic()


def _call(config: CcxtConfig, pacer: _Pacer, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` with pacing and retries of transient ccxt errors (see module docstring)."""
    import ccxt

    transient = (
        ccxt.NetworkError,
        ccxt.RequestTimeout,
        ccxt.ExchangeNotAvailable,
        ccxt.DDoSProtection,
    )
    where = f"{config.source} {config.symbol} {config.timeframe}"
    attempts = config.max_retries + 1
    for attempt in range(attempts):
        pacer.wait()
        try:
            return fn()
        except transient as exc:
            if attempt + 1 >= attempts:
                raise DataSourceError(
                    f"{where}: {what} failed after {attempts} attempt(s); last error: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            time.sleep(min(config.backoff_seconds * 2.0**attempt, config.max_backoff_seconds))
        except ccxt.BaseError as exc:
            raise DataSourceError(f"{where}: {what} failed: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _load_markets(exchange: Any, config: CcxtConfig, pacer: _Pacer) -> None:
    _call(config, pacer, "loading markets", exchange.load_markets)
    markets = exchange.markets or {}
    if config.symbol not in markets:
        close = difflib.get_close_matches(config.symbol, list(markets), n=5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"{config.source} has no market {config.symbol!r} ({len(markets)} markets loaded{hint})"
        )


def _ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _closed_candles(
    exchange: Any,
    config: CcxtConfig,
    start_ms: int,
    end_ms: int | None,
    clock: Clock,
    pacer: _Pacer,
) -> dict[int, list[float]]:
    """Closed candles with ``start_ms <= open < end_ms``, keyed by open time (ms)."""
    tf_ms = config.tf.seconds * 1000
    rows: dict[int, list[float]] = {}
    cursor = start_ms
    sent: list[int] = []  # when each page request went out (the last attempt counts)

    def request(since: int) -> list[list[Any]]:
        sent.append(_ms(clock()))
        # always a full page: exchanges that round ``since`` down repeat earlier candles, and a
        # page trimmed to the window could then hold nothing new
        page: list[list[Any]] = exchange.fetch_ohlcv(
            config.symbol, config.timeframe, since=since, limit=config.limit
        )
        return page

    while True:
        # a candle opening at or after now - timeframe + 1 ms has not closed yet: stop asking
        stop_ms = _ms(clock()) - tf_ms + 1
        if end_ms is not None:
            stop_ms = min(stop_ms, end_ms)
        if cursor >= stop_ms:
            break
        page = _call(
            config,
            pacer,
            f"fetching candles since {pd.Timestamp(cursor, unit='ms', tz='UTC').isoformat()}",
            partial(request, cursor),
        )
        sent_ms = sent[-1]
        last_open: int | None = None
        for candle in page or []:
            open_ms = int(candle[0])
            last_open = open_ms if last_open is None else max(last_open, open_ms)
            if open_ms < cursor or open_ms in rows:
                continue  # before the cursor, or a duplicate from an overlapping page
            if open_ms + tf_ms > sent_ms or (end_ms is not None and open_ms >= end_ms):
                continue  # still forming when requested, or beyond the window
            rows[open_ms] = [float("nan") if v is None else float(v) for v in candle[1:6]]
        if last_open is None or last_open < cursor:
            break  # nothing at or after the cursor: the exchange has nothing new
        cursor = last_open + tf_ms
    return rows


def _to_bars(rows: dict[int, list[float]], config: CcxtConfig) -> Bars:
    opens = np.array(sorted(rows), dtype=np.int64)
    values = np.array([rows[int(t)] for t in opens], dtype=np.float64).reshape(-1, 5)
    index = pd.DatetimeIndex(pd.to_datetime(opens, unit="ms", utc=True))
    frame = make_frame(index, values[:, 0], values[:, 1], values[:, 2], values[:, 3], values[:, 4])
    return Bars.from_frame(
        frame,
        symbol=config.symbol,
        timeframe=config.tf,
        calendar=Calendar.CRYPTO,
        source=config.source,
    )


def fetch_ohlcv(config: CcxtConfig, *, clock: Clock = utc_now) -> Bars:
    """Download the closed candles of ``config.symbol`` in ``[since, until)`` (see module docs).

    ``clock`` supplies "now" for the closed-candle rule and the default ``until``.

    Raises :class:`~raytrader.errors.UnknownNameError` for an exchange ccxt does not know,
    :class:`~raytrader.errors.ConfigError` for an unknown symbol or unsupported timeframe and
    :class:`~raytrader.errors.DataSourceError` when the exchange fails or returns no closed candle.
    """
    exchange = create_exchange(config)
    pacer = _Pacer(config.rate_limit_ms)
    _load_markets(exchange, config, pacer)
    end_ms = _ms(config.until) if config.until is not None else None
    rows = _closed_candles(exchange, config, _ms(config.since), end_ms, clock, pacer)
    if not rows:
        until = config.until.isoformat() if config.until is not None else "now"
        raise DataSourceError(
            f"{config.source} {config.symbol} {config.timeframe}: no closed candles between "
            f"{config.since.isoformat()} and {until}"
        )
    return _to_bars(rows, config)


def poll_closed_candles(
    config: CcxtConfig,
    *,
    max_polls: int | None = None,
    grace_seconds: float = 2.0,
    min_wait_seconds: float = 1.0,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Bars]:
    """Yield each batch of candles that closed since the last one seen, as they close.

    The first poll returns every closed candle from ``config.since`` on (paginated like
    :func:`fetch_ohlcv`); each later poll asks only for candles after the last one yielded, so no
    candle is yielded twice. Polls with nothing new yield nothing. Between polls the generator
    sleeps until the next candle should have closed plus ``grace_seconds`` (at least
    ``min_wait_seconds``). It stops after ``max_polls`` polls, when the cursor passes
    ``config.until``, or never (``max_polls=None`` and no ``until``): a live feed.

    One exchange instance (and one market load) serves all polls; each request has the same
    retries as :func:`fetch_ohlcv`. ``clock`` and ``sleep`` exist so a caller (or a test) can drive
    time.
    """
    exchange = create_exchange(config)
    pacer = _Pacer(config.rate_limit_ms)
    _load_markets(exchange, config, pacer)
    tf_ms = config.tf.seconds * 1000
    end_ms = _ms(config.until) if config.until is not None else None
    cursor = _ms(config.since)
    polls = 0
    while max_polls is None or polls < max_polls:
        if end_ms is not None and cursor >= end_ms:
            return
        rows = _closed_candles(exchange, config, cursor, end_ms, clock, pacer)
        polls += 1
        if rows:
            cursor = max(rows) + tf_ms
            yield _to_bars(rows, config)
        if max_polls is not None and polls >= max_polls:
            return
        # the first unseen candle opens at ``cursor`` and closes one timeframe later
        wait = (cursor + tf_ms - _ms(clock())) / 1000.0 + grace_seconds
        sleep(max(wait, min_wait_seconds))


__all__ = [
    "CcxtConfig",
    "create_exchange",
    "fetch_ohlcv",
    "override_session",
    "poll_closed_candles",
    "rebase_urls",
]
