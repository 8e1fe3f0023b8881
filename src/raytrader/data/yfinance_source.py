"""Daily and intraday bars from Yahoo Finance through the ``yfinance`` library.

``fetch_yfinance(YFinanceConfig(ticker="AAPL", interval="1d", start="2024-01-01"))``

Behaviour
---------
* One call to ``yf.Ticker(ticker).history(...)`` with ``actions=False``, ``prepost=False`` and
  ``repair=False``; yfinance itself fetches Yahoo's cookie and crumb (``fc.yahoo.com``,
  ``/v1/test/getcrumb``), the ticker's exchange timezone and then ``/v8/finance/chart/<ticker>``.
  yfinance reports most failures by logging an error and returning an empty frame; the connector
  collects those log records (a handler on the ``yfinance`` logger for the duration of the call)
  and puts them in its error message.
* ``start``/``end``: a plain date means midnight *in the exchange's timezone* (yfinance's rule; the
  day is included for ``start``, excluded for ``end``); an aware datetime is an exact instant.
  ``end`` defaults to now. Naive datetimes are refused.
* ``auto_adjust=True`` (default) scales open, high, low and close by Yahoo's ``adjclose / close``
  so that splits and dividends do not show up as price jumps; volume is left as reported.
  ``auto_adjust=False`` returns the raw traded prices (Yahoo's "Adj Close" is dropped either way).
* Conversion to the bars contract: columns lower-cased to ``open, high, low, close, volume``,
  float64. Intraday bars keep their exact open instant, converted to UTC. Daily and weekly bars are
  stamped 00:00 UTC of their exchange-local session date (as every daily data set in raytrader
  is), so ``2024-01-02`` of a New York stock is ``2024-01-02T00:00Z``, not 05:00Z. Source:
  ``yfinance:<ticker>``.
* Calendar (what annualizes metrics): ``config.calendar`` when given; else from Yahoo's
  ``instrumentType`` in the chart's metadata — ``CRYPTOCURRENCY`` → ``crypto`` (``BTC-USD``),
  ``CURRENCY`` → ``fx`` (``EURUSD=X``), ``EQUITY``/``ETF``/``MUTUALFUND``/``INDEX`` →
  ``equity``; anything else (futures, or no metadata) → inferred from the bars' weekdays and hours
  (:func:`~raytrader.data.timeframe.infer_calendar`).
* Errors: an empty result (no bars in the window, unknown or delisted ticker), an HTTP failure or an
  unparsable Yahoo answer raise :class:`~raytrader.errors.DataSourceError` naming ticker, interval
  and window, with yfinance's reason (and, with a base-URL override, the failing HTTP statuses).

Pointing yfinance at another host (``base_url_override``)
--------------------------------------------------------
yfinance 1.x hard-codes its hosts (``https://fc.yahoo.com``, ``https://query1.finance.yahoo.com``,
``https://query2.finance.yahoo.com`` …) as literals inside its functions and module constants that
are copied into other modules at import time, so there is no URL setting to change. The one
documented, public hook it offers is the ``session=`` argument of ``yf.Ticker``. With
``base_url_override="http://127.0.0.1:8080"`` this connector therefore hands yfinance a
``requests.Session`` (yfinance accepts ``requests`` as well as ``curl_cffi`` sessions) whose
transport adapter re-addresses every request for a ``*.yahoo.com`` host to the override with the
same path and query (``https://query2.finance.yahoo.com/v8/finance/chart/AAPL?…`` →
``http://127.0.0.1:8080/v8/finance/chart/AAPL?…``; the original host is sent in
``X-Forwarded-Host``) and refuses, with a ``DataSourceError`` and before connecting, any request for
another host. No yfinance function is patched. This is how the test-suite runs the real yfinance
code against a local replay server.

yfinance keeps *one process-wide* session, cookie, crumb and an in-memory cache of past-range chart
responses (keyed by the real Yahoo URL). So that an override never leaks into a later real call
(or the reverse), :func:`fetch_yfinance` always passes the session it wants — a shared default
``curl_cffi`` session (the same kind yfinance creates) when no override is set — and, in override
mode, clears that response cache before and after the call (``YfData.cache_get.cache_clear()``, the
cache's public ``functools.lru_cache`` method). A crumb obtained from an override host may be sent
once to Yahoo afterwards; Yahoo rejects it and yfinance fetches a fresh one by itself.
"""

from __future__ import annotations

import logging
import re
import warnings
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, Field, ValidationInfo, field_validator, model_validator

from raytrader.config import StrictConfig
from raytrader.contract import OHLCV
from raytrader.data.bars import Bars, make_frame
from raytrader.data.http_override import OverrideSession, check_base_url, override_session
from raytrader.data.timeframe import Calendar, Timeframe, infer_calendar
from raytrader.errors import DataSourceError

#: raytrader timeframe name → yfinance interval
YF_INTERVALS = {
    "1m": "1m",
    "2m": "2m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "60m": "60m",
    "90m": "90m",
    "1h": "1h",
    "1d": "1d",
    "5d": "5d",
    "1w": "1wk",
}
#: Yahoo's ``instrumentType`` → the calendar its bars trade on
INSTRUMENT_CALENDARS = {
    "CRYPTOCURRENCY": Calendar.CRYPTO,
    "CURRENCY": Calendar.FX,
    "EQUITY": Calendar.EQUITY,
    "ETF": Calendar.EQUITY,
    "MUTUALFUND": Calendar.EQUITY,
    "INDEX": Calendar.EQUITY,
}
_YAHOO_HOST = re.compile(r"(^|\.)yahoo\.com$", re.IGNORECASE)


def is_yahoo_host(host: str) -> bool:
    return bool(_YAHOO_HOST.search(host))


class YFinanceConfig(StrictConfig):
    """One ticker, one interval, one window; see the module docstring for the rules."""

    ticker: str = Field(min_length=1)
    #: bar length: 1m 2m 5m 15m 30m 60m 90m 1h 1d 5d 1w (``1wk`` is accepted for 1w)
    interval: str = "1d"
    start: AwareDatetime | date
    end: AwareDatetime | date | None = None
    #: scale OHLC by Yahoo's adjclose/close (split and dividend adjusted); False = raw prices
    auto_adjust: bool = True
    #: HTTP timeout of one request, seconds
    timeout_seconds: float = Field(default=30.0, gt=0.0)
    #: base URL that receives every request meant for a ``*.yahoo.com`` host (tests, mirrors)
    base_url_override: str | None = None
    #: market calendar of the bars (None: from Yahoo's instrument type, see the module docstring)
    calendar: Calendar | None = None

    @field_validator("ticker")
    @classmethod
    def _ticker(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        raw = value.strip()
        name = Timeframe.parse("1w" if raw == "1wk" else raw).name
        if name not in YF_INTERVALS:
            raise ValueError(
                f"yfinance has no {value!r} bars; use one of {', '.join(YF_INTERVALS)}"
            )
        return name

    @field_validator("start", "end", mode="before")
    @classmethod
    def _no_naive(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(
                f"{info.field_name} {value.isoformat()} is timezone-naive; pass a date "
                "(exchange-local midnight) or a timezone-aware datetime"
            )
        return value

    @field_validator("base_url_override")
    @classmethod
    def _override(cls, value: str | None) -> str | None:
        return check_base_url(value, "base_url_override")

    @model_validator(mode="after")
    def _window(self) -> YFinanceConfig:
        # a date and a datetime do not compare (the date's timezone is the exchange's); yfinance
        # itself refuses such a window once it knows that timezone
        same_kind = isinstance(self.start, datetime) == isinstance(self.end, datetime)
        if self.end is not None and same_kind and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    @property
    def tf(self) -> Timeframe:
        return Timeframe.parse(self.interval)

    @property
    def source(self) -> str:
        return f"yfinance:{self.ticker}"

    def describe(self) -> str:
        end = self.end if self.end is not None else "now"
        return f"{self.source} {self.interval} {self.start} → {end}"


_default_session: Any = None


def _session_for(config: YFinanceConfig) -> Any:
    """The session yfinance must use for ``config`` (see module docstring)."""
    global _default_session
    if config.base_url_override is not None:
        return override_session(config.base_url_override, rebase_host=is_yahoo_host)
    if _default_session is None:
        from curl_cffi import requests as curl_requests

        _default_session = curl_requests.Session(impersonate="chrome")
    return _default_session


def _clear_response_cache() -> None:
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()


def to_contract_frame(raw: pd.DataFrame, tf: Timeframe) -> pd.DataFrame:
    """yfinance's history frame → contract layout (see module docstring for the time rule)."""
    cols = {str(c).lower(): c for c in raw.columns}
    missing = [c for c in OHLCV if c not in cols]
    if missing:
        raise DataSourceError(f"yfinance result lacks columns {missing}; got {list(raw.columns)}")
    idx = raw.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise DataSourceError(f"yfinance result has a {type(idx).__name__}, not a DatetimeIndex")
    if tf.seconds >= 86_400:
        local = idx.tz_localize(None) if idx.tz is not None else idx
        utc = local.normalize().tz_localize("UTC")
    else:
        utc = idx.tz_convert("UTC") if idx.tz is not None else idx.tz_localize("UTC")
    values = [raw[cols[c]].to_numpy(dtype=np.float64) for c in OHLCV]
    return make_frame(utc, *values)


class _ErrorLog(logging.Handler):
    """Collects the error messages yfinance logs (it logs, rather than raises, most failures)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _history(
    yf: Any, config: YFinanceConfig, session: Any, errors: _ErrorLog
) -> tuple[pd.DataFrame, str]:
    """yfinance's history frame and Yahoo's ``instrumentType`` of the ticker ("" if unknown)."""
    logger = logging.getLogger("yfinance")
    logger.addHandler(errors)
    try:
        with warnings.catch_warnings():
            # yfinance calls pandas APIs deprecated in pandas 3 (inplace=...): not actionable here
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"yfinance(\.|$)")
            ticker = yf.Ticker(config.ticker, session=session)
            raw: pd.DataFrame = ticker.history(
                interval=YF_INTERVALS[config.interval],
                start=config.start,
                end=config.end,
                auto_adjust=config.auto_adjust,
                actions=False,
                prepost=False,
                repair=False,
                timeout=config.timeout_seconds,
            )
            # read one key: the metadata mapping fetches intraday data for 'tradingPeriods'
            kind = ticker.history_metadata.get("instrumentType") if raw is not None else None
    finally:
        logger.removeHandler(errors)
    return raw, str(kind or "")


def fetch_yfinance(config: YFinanceConfig) -> Bars:
    """Download ``config.ticker`` bars from Yahoo Finance as validated :class:`Bars`.

    Raises :class:`~raytrader.errors.DataSourceError` when Yahoo returns no bars or fails.
    """
    import yfinance as yf

    session = _session_for(config)
    override = isinstance(session, OverrideSession)
    errors = _ErrorLog()
    if override:
        _clear_response_cache()
    try:
        raw, instrument = _history(yf, config, session, errors)
    except DataSourceError:
        raise
    except Exception as exc:  # yfinance raises many types (its own, JSON, curl, requests)
        raise DataSourceError(
            f"{config.describe()}: yfinance failed: {type(exc).__name__}: {exc}"
            + _detail(session, errors)
        ) from exc
    finally:
        if override:
            _clear_response_cache()
    if override and session.refused:
        raise DataSourceError(
            f"{config.describe()}: yfinance tried to contact a host outside the override: "
            + "; ".join(session.refused)
        )
    if raw is None or len(raw) == 0:
        raise DataSourceError(
            f"{config.describe()}: Yahoo returned no bars (unknown or delisted ticker, or an "
            "empty window)" + _detail(session, errors)
        )
    frame = to_contract_frame(raw, config.tf)
    calendar = config.calendar or INSTRUMENT_CALENDARS.get(instrument)
    if calendar is None:
        calendar = infer_calendar(pd.DatetimeIndex(frame.index), config.tf)
    return Bars.from_frame(
        frame,
        symbol=config.ticker,
        timeframe=config.tf,
        calendar=calendar,
        source=config.source,
    )


def _detail(session: Any, errors: _ErrorLog) -> str:
    """What yfinance logged and, with an override session, which data requests failed.

    The cookie and consent pages (``fc.yahoo.com``, ``guce.yahoo.com``) answer 404 by design and
    are left out.
    """
    parts = []
    if errors.messages:
        parts.append("yfinance: " + " | ".join(dict.fromkeys(m.strip() for m in errors.messages)))
    if isinstance(session, OverrideSession):
        failed = [e for e in session.http_errors if "/finance/" in e]
        if failed:
            parts.append("HTTP errors: " + "; ".join(failed[-3:]))
    return f" ({'; '.join(parts)})" if parts else ""


__all__ = [
    "INSTRUMENT_CALENDARS",
    "YF_INTERVALS",
    "YFinanceConfig",
    "fetch_yfinance",
    "to_contract_frame",
]
