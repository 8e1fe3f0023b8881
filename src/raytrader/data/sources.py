"""One entry point to get bars by name: a bundled data set, the synthetic generator or a file.

``load_bars("goog")`` · ``load_bars("synthetic:n_bars=100000,timeframe=1m,seed=3")`` ·
``load_bars("data/btc.csv", timeframe="1m")`` · ``load_bars("goog", start="2010-01-01")``

The market calendar (which fixes the bars per year that annualize every metric) is the data set's
own for bundled and synthetic data and is inferred from a file's bars
(:func:`raytrader.data.timeframe.infer_calendar`); ``calendar=`` overrides both. ``start``/``end``
keep the bars with ``start <= open time < end`` (ISO-8601 dates or times; naive means UTC).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from raytrader.data.bars import Bars
from raytrader.data.bundled import BUNDLED
from raytrader.data.files import read_bars_file
from raytrader.data.synthetic import SyntheticConfig, synthetic_bars
from raytrader.data.timeframe import Calendar
from raytrader.errors import ConfigError, DataSourceError, UnknownNameError

SYNTHETIC = "synthetic"


def dataset_names() -> list[str]:
    return [*BUNDLED, SYNTHETIC]


def parse_synthetic_spec(spec: str) -> SyntheticConfig:
    """``synthetic`` or ``synthetic:key=value,key=value`` → :class:`SyntheticConfig`."""
    _, _, rest = spec.partition(":")
    fields: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"synthetic option {part!r} must be key=value")
        fields[key.strip()] = value.strip()
    return SyntheticConfig.parse(fields, where="synthetic")


def split_specs(data: str) -> list[str]:
    """Several data specs given as one: ``"goog,sp500"`` -> ``["goog", "sp500"]``. A piece that is
    a ``key=value`` option (an ``=``, no ``:`` or path separator) belongs to the spec before it, so
    ``"synthetic:seed=1,symbol=A,goog"`` is two specs."""
    specs: list[str] = []
    for piece in (p.strip() for p in data.split(",")):
        option = "=" in piece and ":" not in piece and "/" not in piece
        if option and specs:
            specs[-1] = f"{specs[-1]},{piece}"
        elif piece:
            specs.append(piece)
    if not specs:
        raise ConfigError(f"no data set in {data!r}")
    return specs


def load_bars(
    name: str,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    calendar: Calendar | str | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    repair: bool = False,
) -> Bars:
    """Resolve ``name`` to validated bars (see module docstring for accepted forms)."""
    cal = parse_calendar(calendar)
    key = name.strip()
    if key.lower() in BUNDLED:
        bars = BUNDLED[key.lower()].load()
    elif key.lower() == SYNTHETIC or key.lower().startswith(SYNTHETIC + ":"):
        bars = synthetic_bars(parse_synthetic_spec(key))
    else:
        path = Path(key)
        if not (path.suffix.lower() in (".csv", ".parquet", ".pq") or path.exists()):
            raise UnknownNameError("dataset", key, dataset_names())
        bars = read_bars_file(path, symbol=symbol, timeframe=timeframe, calendar=cal, repair=repair)
    if cal is not None and bars.calendar != cal:
        bars = bars.with_calendar(cal)
    return select_range(bars, start, end)


def parse_calendar(value: Calendar | str | None) -> Calendar | None:
    """``None`` or ``"auto"`` → ``None`` (the data's own or inferred); else a :class:`Calendar`."""
    if value is None or isinstance(value, Calendar):
        return value
    text = value.strip().lower()
    if text in ("", "auto"):
        return None
    try:
        return Calendar(text)
    except ValueError:
        choices = ", ".join(["auto", *(c.value for c in Calendar)])
        raise ConfigError(f"unknown calendar {value!r}; use one of {choices}") from None


def parse_time(value: str | pd.Timestamp, what: str) -> pd.Timestamp:
    """An ISO-8601 date or time as a UTC timestamp (naive means UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {value!r} is not an ISO-8601 date or time: {exc}") from None
    if pd.isna(ts):
        raise ConfigError(f"{what} {value!r} is not an ISO-8601 date or time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def select_range(
    bars: Bars, start: str | pd.Timestamp | None, end: str | pd.Timestamp | None
) -> Bars:
    """The bars with ``start <= open time < end``; an empty selection is an error naming both
    ranges."""
    if start is None and end is None:
        return bars
    lo = None if start is None else parse_time(start, "start")
    hi = None if end is None else parse_time(end, "end")
    if lo is not None and hi is not None and lo >= hi:
        raise ConfigError(f"start {lo.isoformat()} is not before end {hi.isoformat()}")
    out = bars.slice(lo, hi)
    if len(out) == 0:
        where = bars.source or bars.symbol
        raise DataSourceError(
            f"{where}: no bars in [{lo.isoformat() if lo is not None else '-'}, "
            f"{hi.isoformat() if hi is not None else '-'}); the data runs "
            f"{bars.index[0].isoformat()} … {bars.index[-1].isoformat()}"
        )
    return out
