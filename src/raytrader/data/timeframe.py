"""Bar timeframes and the trading calendars used to annualize metrics.

A bar's timestamp is its **open time** (UTC); a ``1h`` bar stamped 10:00 covers [10:00, 11:00).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError

_TF_RE = re.compile(r"^(\d+)(m|h|d|w)$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Calendar(StrEnum):
    """When a market trades; fixes how many bars make a year for annualization.

    =========  ==============  ============
    calendar   days per year   hours a day
    =========  ==============  ============
    equity     252             6.5
    fx         260             24
    crypto     365             24
    =========  ==============  ============

    Daily bars use ``days per year``; intraday bars use ``days per year * hours a day * 60 / minutes``.
    Daily equity bars therefore annualize with 252 periods, as empyrical's ``DAILY`` does.
    """

    EQUITY = "equity"
    FX = "fx"
    CRYPTO = "crypto"

    @property
    def days_per_year(self) -> int:
        return {Calendar.EQUITY: 252, Calendar.FX: 260, Calendar.CRYPTO: 365}[self]

    @property
    def hours_per_day(self) -> float:
        return {Calendar.EQUITY: 6.5, Calendar.FX: 24.0, Calendar.CRYPTO: 24.0}[self]


#: a weekend day "trades" when it holds at least this share of an average weekday's bars
_SATURDAY_SHARE = 0.5
#: FX trades from Sunday evening (about 21:00 UTC) to Friday evening: a few Sunday hours a week
_SUNDAY_SHARE = 0.05
#: intraday bars covering at least this many hours of a weekday trade around the clock
_ROUND_THE_CLOCK_H = 20.0


def infer_calendar(index: pd.DatetimeIndex, timeframe: Timeframe) -> Calendar:
    """The market calendar the bars' days and hours show (their UTC weekdays):

    * Saturday bars (at least half as many as on an average weekday) → ``crypto`` (every day);
    * else Sunday bars (at least 5 % of an average weekday's: FX opens on Sunday evening) → ``fx``;
    * else weekday-only: daily (or longer) bars → ``equity``; intraday bars that cover at least
      20 hours of a median weekday → ``fx``, shorter sessions → ``equity``.

    Bars spanning less than a week cannot show a weekend: there, intraday bars covering at least
    20 hours of a day are ``crypto`` (24/7 is the only round-the-clock calendar they cannot rule
    out), otherwise the weekday rules apply. Pass the calendar explicitly to override."""
    if len(index) == 0:
        return Calendar.CRYPTO
    counts = np.bincount(np.asarray(index.dayofweek), minlength=7).astype(np.float64)
    weekday = counts[:5].mean()
    if counts[5] > 0 and counts[5] >= _SATURDAY_SHARE * weekday:
        return Calendar.CRYPTO
    if counts[6] > 0 and counts[6] >= _SUNDAY_SHARE * weekday:
        return Calendar.FX
    short = index[-1] - index[0] < pd.Timedelta(days=7)
    if timeframe.seconds >= 86400:
        return Calendar.EQUITY
    hour_of_day = pd.Series((index - index.normalize()) / pd.Timedelta(hours=1), index=index.date)
    per_day = hour_of_day.groupby(level=0)
    hours = float(np.median((per_day.max() - per_day.min()).to_numpy())) + timeframe.seconds / 3600
    if hours >= _ROUND_THE_CLOCK_H:
        return Calendar.CRYPTO if short else Calendar.FX
    return Calendar.EQUITY


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar length such as ``1m``, ``5m``, ``1h``, ``4h`` or ``1d``."""

    name: str
    seconds: int

    @classmethod
    def parse(cls, value: str | Timeframe) -> Timeframe:
        if isinstance(value, Timeframe):
            return value
        m = _TF_RE.match(str(value).strip())
        if not m or int(m.group(1)) <= 0:
            raise ConfigError(
                f"invalid timeframe {value!r}: use <n><unit> with unit m, h, d or w (e.g. 1m, 4h, 1d)"
            )
        n, unit = int(m.group(1)), m.group(2)
        return cls(name=f"{n}{unit}", seconds=n * _UNIT_SECONDS[unit])

    @classmethod
    def infer(cls, index: pd.DatetimeIndex, source: str) -> Timeframe:
        """The most common spacing of ``index`` as a timeframe (a daily series with weekends and
        holidays is still ``1d``); an index with fewer than two distinct times is an error."""
        gaps = np.diff(index.asi8) // 1_000_000_000
        gaps = gaps[gaps > 0]
        if not len(gaps):
            raise ConfigError(f"{source}: cannot infer the timeframe from fewer than two bars")
        values, counts = np.unique(gaps, return_counts=True)
        seconds = int(values[np.argmax(counts)])
        for unit in ("w", "d", "h", "m"):
            if seconds % _UNIT_SECONDS[unit] == 0:
                return cls.parse(f"{seconds // _UNIT_SECONDS[unit]}{unit}")
        raise ConfigError(
            f"{source}: bars are {seconds} s apart, not a whole number of minutes; "
            "resample them or pass the timeframe"
        )

    @property
    def delta(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=self.seconds)

    @property
    def pandas_freq(self) -> str:
        return f"{self.seconds}s"

    def periods_per_year(self, calendar: Calendar | str) -> float:
        """Number of bars in a year for ``calendar`` (see :class:`Calendar`)."""
        cal = Calendar(calendar)
        if self.seconds >= 86400:
            return cal.days_per_year * 86400 / self.seconds
        return cal.days_per_year * cal.hours_per_day * 3600 / self.seconds

    def __str__(self) -> str:
        return self.name
