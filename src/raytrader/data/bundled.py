"""Real market data bundled inside installed PyPI packages (no network needed).

=========  ==========================  =========  ========  ==============================
name       origin                      timeframe  calendar  notes
=========  ==========================  =========  ========  ==============================
goog       backtesting.py ``GOOG``     1d         equity    2004-08-19 .. 2013-03-01
eurusd     backtesting.py ``EURUSD``   1h         fx        2017-04-19 .. 2018-02-07
sp500      arch ``sp500``              1d         equity    1999-01-04 .. 2018-12-31
=========  ==========================  =========  ========  ==============================

Timestamps are naive in the packages; they are read as UTC bar open times (daily bars at 00:00 UTC).

``sp500`` uses the raw Open/High/Low/Close: in this data set ``Adj Close`` equals ``Close`` on every row
(an index has no splits or cash dividends), so adjusting would change nothing; a test pins that fact.
Volumes are converted to float64.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from raytrader.data.bars import Bars
from raytrader.data.files import normalize_columns
from raytrader.data.timeframe import Calendar
from raytrader.errors import DataSourceError


@dataclass(frozen=True)
class BundledDataset:
    name: str
    symbol: str
    timeframe: str
    calendar: Calendar
    description: str
    loader: Callable[[], pd.DataFrame]

    def load(self) -> Bars:
        raw = self.loader()
        raw = raw.rename_axis("timestamp").reset_index()
        frame = normalize_columns(raw, source=self.origin, symbol=self.symbol)
        return Bars.from_frame(
            frame,
            symbol=self.symbol,
            timeframe=self.timeframe,
            calendar=self.calendar,
            source=self.origin,
        )

    @property
    def origin(self) -> str:
        return f"bundled:{self.name}"


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, located without importing the package (importing
    backtesting.py would pull in its plotting stack and cost ~0.4 s)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(
            f"package {package!r} is not installed; it ships the bundled data set"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DataSourceError(f"{path}: bundled data file missing from the installed {package!r}")
    return path


def _backtesting_csv(name: str) -> pd.DataFrame:
    # the same parse backtesting.test uses: first column is the index, parsed as dates
    return pd.read_csv(_package_file("backtesting", "test", name), index_col=0, parse_dates=True)


def _goog() -> pd.DataFrame:
    return _backtesting_csv("GOOG.csv")


def _eurusd() -> pd.DataFrame:
    return _backtesting_csv("EURUSD.csv")


def _sp500() -> pd.DataFrame:
    from arch.data import sp500

    raw = sp500.load()
    return raw[["Open", "High", "Low", "Close", "Volume"]].copy()


BUNDLED: dict[str, BundledDataset] = {
    d.name: d
    for d in (
        BundledDataset(
            "goog", "GOOG", "1d", Calendar.EQUITY, "Alphabet daily, backtesting.py", _goog
        ),
        BundledDataset(
            "eurusd", "EURUSD", "1h", Calendar.FX, "EUR/USD hourly, backtesting.py", _eurusd
        ),
        BundledDataset(
            "sp500", "SP500", "1d", Calendar.EQUITY, "S&P 500 index daily, arch", _sp500
        ),
    )
}
