"""CSV and Parquet bar files.

Column names are matched case-insensitively (``Open``, ``OPEN`` and ``open`` are the same). The time
column may be called ``timestamp``, ``time``, ``datetime``, ``date`` or ``open_time`` (or be the
Parquet index) and may hold ISO-8601 strings or epoch milliseconds. Naive timestamps are read as UTC;
timestamps with an offset are converted to UTC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raytrader.contract import OHLCV
from raytrader.data.bars import Bars
from raytrader.data.timeframe import Calendar, Timeframe, infer_calendar
from raytrader.errors import DataSourceError, DataValidationError

TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "open_time")
_OFFSET_RE = r"(?:Z|[+-]\d{2}:?\d{2})$"


def read_bars_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    calendar: Calendar | str | None = None,
    repair: bool = False,
) -> Bars:
    """Load a ``.csv`` or ``.parquet`` file into validated :class:`Bars`; without ``timeframe``,
    the bars' most common spacing is their timeframe, and without ``calendar`` the calendar their
    weekdays and hours show (:func:`~raytrader.data.timeframe.infer_calendar`)."""
    p = Path(path)
    if not p.is_file():
        raise DataSourceError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(p)
        elif suffix in (".parquet", ".pq"):
            raw = pd.read_parquet(p)
            if isinstance(raw.index, pd.DatetimeIndex):
                raw = raw.reset_index()
        else:
            raise DataSourceError(f"{p}: unsupported file type {suffix!r} (use .csv or .parquet)")
    except DataSourceError:
        raise
    except Exception as exc:  # parser errors come in many types; report them uniformly
        raise DataSourceError(f"{p}: cannot parse: {exc}") from exc
    sym = symbol or p.stem.upper()
    frame = normalize_columns(raw, source=str(p), symbol=sym)
    index = pd.DatetimeIndex(frame.index).sort_values()
    tf = Timeframe.parse(timeframe) if timeframe else Timeframe.infer(index, str(p))
    cal = calendar if calendar is not None else infer_calendar(index, tf)
    return Bars.from_frame(
        frame, symbol=sym, timeframe=tf, calendar=cal, source=str(p), repair=repair
    )


def normalize_columns(raw: pd.DataFrame, *, source: str, symbol: str) -> pd.DataFrame:
    """Map a loosely named frame onto the contract layout (time index + float64 OHLCV)."""
    lower = {str(c).strip().lower(): c for c in raw.columns}
    missing = [c for c in OHLCV if c not in lower]
    if missing:
        raise DataValidationError(
            symbol=symbol,
            rule="columns",
            detail=f"missing column(s) {missing}; found {list(raw.columns)}",
            source=source,
        )
    time_col = next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if time_col is None:
        raise DataValidationError(
            symbol=symbol,
            rule="columns",
            detail=f"no time column: expected one of {list(TIME_COLUMNS)}; found {list(raw.columns)}",
            source=source,
        )
    index = parse_timestamps(raw[time_col], source=source, symbol=symbol, column=str(time_col))
    data = {}
    for c in OHLCV:
        col = raw[lower[c]]
        values = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & col.notna().to_numpy())
        if bad.size:
            rows = [f"row {int(i)}: {c}={col.iloc[i]!r}" for i in bad[:5]]
            raise DataValidationError(
                symbol=symbol,
                rule="numeric",
                detail=f"column {c!r} has non-numeric values",
                rows=rows,
                count=int(bad.size),
                source=source,
            )
        data[c] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(data, index=pd.DatetimeIndex(index, name="timestamp"))


def parse_timestamps(col: pd.Series, *, source: str, symbol: str, column: str) -> pd.DatetimeIndex:
    """ISO strings or epoch milliseconds → UTC DatetimeIndex; names the first unparsable rows."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(col).tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return pd.DatetimeIndex(col).tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(col.dtype):
        return pd.DatetimeIndex(pd.to_datetime(col, unit="ms", utc=True))
    text = col.astype(str).str.strip()
    # naive and offset-carrying values are parsed apart: in one call, pandas 2 applies a previous
    # row's offset to a following naive value
    has_offset = text.str.contains(_OFFSET_RE, regex=True).to_numpy()
    parsed = pd.Series(pd.NaT, index=col.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        parsed[has_offset] = pd.to_datetime(
            text[has_offset], utc=True, errors="coerce", format="ISO8601"
        )
    if (~has_offset).any():
        naive = pd.to_datetime(text[~has_offset], errors="coerce", format="ISO8601")
        parsed[~has_offset] = naive.dt.tz_localize("UTC")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        rows = [f"row {int(i)}: {column}={col.iloc[i]!r}" for i in bad[:5]]
        raise DataValidationError(
            symbol=symbol,
            rule="timestamp",
            detail=f"column {column!r} has values that are neither ISO-8601 nor epoch milliseconds",
            rows=rows,
            count=int(bad.size),
            source=source,
        )
    return pd.DatetimeIndex(parsed)


def write_bars_csv(bars: Bars, path: str | Path) -> Path:
    """Write bars as CSV with ISO-8601 UTC timestamps (atomically: temp file then rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    out = bars.frame.copy()
    out.index = out.index.map(lambda t: t.isoformat())
    out.to_csv(tmp, index_label="timestamp")
    tmp.replace(p)
    return p
