"""The bars contract every loader, store and engine relies on.

A valid bars frame has

* a unique, strictly increasing, timezone-aware **UTC** ``DatetimeIndex`` (bar open times), stored
  at nanosecond resolution;
* float64 columns ``open, high, low, close, volume`` (exactly these, in this order);
* no NaN or infinite values, strictly positive prices and non-negative volume;
* ``high >= max(open, close)`` and ``low <= min(open, close)`` on every row.

:class:`Bars` pairs such a frame with its symbol, timeframe and calendar. It can only be built through
:meth:`Bars.from_frame`, which validates, so holding a ``Bars`` means holding checked data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import NoReturn

import numpy as np
import pandas as pd

from raytrader.contract import OHLCV
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import DataValidationError


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` changed, exactly."""

    sorted_rows: bool = False
    dropped_duplicates: tuple[str, ...] = ()
    conflicting_duplicates: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.sorted_rows or bool(self.dropped_duplicates)

    def describe(self) -> str:
        if not self.changed:
            return "no changes"
        parts = []
        if self.sorted_rows:
            parts.append("sorted rows by timestamp")
        if self.dropped_duplicates:
            shown = ", ".join(self.dropped_duplicates[:5])
            parts.append(
                f"dropped {len(self.dropped_duplicates)} duplicate timestamp row(s) (kept the first): {shown}"
            )
        if self.conflicting_duplicates:
            parts.append(
                f"{len(self.conflicting_duplicates)} of them had different values than the kept row"
            )
        return "; ".join(parts)


@dataclass(frozen=True, eq=False)
class Bars:
    """Validated OHLCV bars of one symbol at one timeframe."""

    frame: pd.DataFrame
    symbol: str
    timeframe: Timeframe
    calendar: Calendar = Calendar.CRYPTO
    source: str | None = None
    repair_report: RepairReport = field(default_factory=RepairReport)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        symbol: str,
        timeframe: str | Timeframe,
        calendar: Calendar | str = Calendar.CRYPTO,
        source: str | None = None,
        repair: bool = False,
    ) -> Bars:
        """Validate ``frame`` (optionally repairing order/duplicates first) and wrap it."""
        tf = Timeframe.parse(timeframe)
        report = RepairReport()
        if repair:
            frame, report = repair_frame(frame, symbol=symbol, source=source)
        validate(frame, symbol=symbol, source=source)
        frame = frame.copy()
        # one index resolution whatever the pandas version (pandas 2 parses to ns, 3 to us)
        frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
        frame.index.name = "timestamp"
        frame.attrs = {"symbol": symbol, "timeframe": tf.name}
        return cls(
            frame=frame,
            symbol=symbol,
            timeframe=tf,
            calendar=Calendar(calendar),
            source=source,
            repair_report=report,
        )

    def __len__(self) -> int:
        return len(self.frame)

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.frame.index)

    def column(self, name: str) -> np.ndarray:
        """A read-only contiguous float64 array of one OHLCV column (cached)."""
        return self.arrays[name]

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for c in OHLCV:
            a = np.ascontiguousarray(self.frame[c].to_numpy(dtype=np.float64))
            a.flags.writeable = False
            out[c] = a
        return out

    def slice(self, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> Bars:
        """Bars with ``start <= timestamp < end`` (already valid, so no re-validation)."""
        idx = self.index
        mask = np.ones(len(idx), dtype=bool)
        if start is not None:
            mask &= idx >= pd.Timestamp(start)
        if end is not None:
            mask &= idx < pd.Timestamp(end)
        return self.head_mask(mask)

    def head(self, n: int) -> Bars:
        mask = np.zeros(len(self), dtype=bool)
        mask[:n] = True
        return self.head_mask(mask)

    def head_mask(self, mask: np.ndarray) -> Bars:
        frame = self.frame.loc[mask].copy()
        frame.attrs = dict(self.frame.attrs)
        return Bars(
            frame=frame,
            symbol=self.symbol,
            timeframe=self.timeframe,
            calendar=self.calendar,
            source=self.source,
        )

    def with_calendar(self, calendar: Calendar | str) -> Bars:
        """The same bars annualized on another market calendar."""
        return Bars(
            frame=self.frame,
            symbol=self.symbol,
            timeframe=self.timeframe,
            calendar=Calendar(calendar),
            source=self.source,
            repair_report=self.repair_report,
        )

    @cached_property
    def periods_per_year(self) -> float:
        return self.timeframe.periods_per_year(self.calendar)


def _fmt_ts(ts: object) -> str:
    if isinstance(ts, pd.Timestamp):
        return ts.isoformat()
    return str(ts)


def _row_desc(frame: pd.DataFrame, positions: np.ndarray, cols: tuple[str, ...]) -> list[str]:
    out = []
    for pos in positions[: DataValidationError.MAX_SHOWN]:
        vals = ", ".join(f"{c}={float(frame[c].iloc[pos])!r}" for c in cols if c in frame.columns)
        out.append(f"row {int(pos)} at {_fmt_ts(frame.index[pos])} ({vals})")
    return out


def validate(frame: pd.DataFrame, *, symbol: str, source: str | None = None) -> None:
    """Raise :class:`DataValidationError` at the first contract rule ``frame`` breaks."""

    def fail(
        rule: str, detail: str, positions: np.ndarray | None = None, cols: tuple[str, ...] = ()
    ) -> NoReturn:
        rows: list[str] = []
        count = 0
        if positions is not None:
            count = len(positions)
            rows = (
                _row_desc(frame, positions, cols)
                if cols
                else [
                    f"row {int(p)} at {_fmt_ts(frame.index[p])}"
                    for p in positions[: DataValidationError.MAX_SHOWN]
                ]
            )
        raise DataValidationError(
            symbol=symbol, rule=rule, detail=detail, rows=rows, count=count, source=source
        )

    if not isinstance(frame, pd.DataFrame):
        fail("frame", f"expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        fail("non_empty", "no bars")
    idx = frame.index
    if not isinstance(idx, pd.DatetimeIndex):
        fail("index_type", f"index must be a DatetimeIndex, got {type(idx).__name__}")
    if idx.tz is None:
        fail("index_utc", "index is timezone-naive; timestamps must be timezone-aware UTC")
    if str(idx.tz) != "UTC":
        fail("index_utc", f"index timezone is {idx.tz}, expected UTC")
    cols = tuple(frame.columns)
    if cols != OHLCV:
        missing = [c for c in OHLCV if c not in cols]
        extra = [c for c in cols if c not in OHLCV]
        fail(
            "columns",
            f"columns must be exactly {list(OHLCV)}; missing {missing}, unexpected {extra}",
        )
    for c in OHLCV:
        if frame[c].dtype != np.float64:
            fail("dtype", f"column {c!r} has dtype {frame[c].dtype}, expected float64")

    i8 = idx.asi8
    if len(i8) > 1:
        d = np.diff(i8)
        dup = np.flatnonzero(d == 0) + 1
        if dup.size:
            fail("index_unique", "duplicate timestamps", dup)
        back = np.flatnonzero(d < 0) + 1
        if back.size:
            fail("index_increasing", "timestamps go backwards (not sorted)", back)

    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        which = sorted({OHLCV[j] for j in np.flatnonzero(bad.any(axis=0))})
        fail("finite", f"NaN or infinite values in {which}", rows, OHLCV)
    o, h, lo, cl, v = (values[:, j] for j in range(5))
    nonpos = np.flatnonzero((o <= 0) | (h <= 0) | (lo <= 0) | (cl <= 0))
    if nonpos.size:
        fail("positive_prices", "prices must be > 0", nonpos, OHLCV[:4])
    high_bad = np.flatnonzero(h < np.maximum(o, cl))
    if high_bad.size:
        fail("high_ge_open_close", "high < max(open, close)", high_bad, ("open", "high", "close"))
    low_bad = np.flatnonzero(lo > np.minimum(o, cl))
    if low_bad.size:
        fail("low_le_open_close", "low > min(open, close)", low_bad, ("open", "low", "close"))
    vol_bad = np.flatnonzero(v < 0)
    if vol_bad.size:
        fail("volume_nonnegative", "volume < 0", vol_bad, ("volume",))


def repair_frame(
    frame: pd.DataFrame, *, symbol: str, source: str | None = None
) -> tuple[pd.DataFrame, RepairReport]:
    """Sort by timestamp and drop duplicate timestamps (keeping the first), reporting both.

    Nothing else is "repaired": bad prices or volumes still fail validation.
    """
    if not isinstance(frame.index, pd.DatetimeIndex):
        validate(frame, symbol=symbol, source=source)  # raises the index_type error
    sorted_rows = not frame.index.is_monotonic_increasing
    if sorted_rows:
        frame = frame.sort_index(kind="stable")
    dup_mask = frame.index.duplicated(keep="first")
    dropped: tuple[str, ...] = ()
    conflicting: tuple[str, ...] = ()
    if dup_mask.any():
        dup_ts = frame.index[dup_mask]
        dropped = tuple(_fmt_ts(t) for t in dup_ts)
        kept = frame[~dup_mask]
        conflicting = tuple(
            _fmt_ts(t)
            for t, row in zip(dup_ts, frame[dup_mask].itertuples(index=False), strict=True)
            if tuple(kept.loc[t]) != tuple(row)
        )
        frame = kept
    return frame, RepairReport(
        sorted_rows=sorted_rows, dropped_duplicates=dropped, conflicting_duplicates=conflicting
    )


def make_frame(
    index: pd.DatetimeIndex | np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> pd.DataFrame:
    """Build a frame in contract layout from arrays (no validation)."""
    return pd.DataFrame(
        {
            "open": np.asarray(open_, dtype=np.float64),
            "high": np.asarray(high, dtype=np.float64),
            "low": np.asarray(low, dtype=np.float64),
            "close": np.asarray(close, dtype=np.float64),
            "volume": np.asarray(volume, dtype=np.float64),
        },
        index=pd.DatetimeIndex(index, name="timestamp"),
    )
