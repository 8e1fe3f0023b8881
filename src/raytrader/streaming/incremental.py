"""Incremental (streaming) computation of a feature set, equal to the batch engine bit for bit.

TA-Lib's recursive indicators (EMA, RSI, ADX, ATR, MACD, …) depend on where the series starts, so
a window of recent bars cannot reproduce the batch values exactly. This engine therefore keeps each
symbol's **whole** bar history and, for every micro-batch of new bars, evaluates the *same*
:class:`~raytrader.features.spec.FeatureSet` over that history with the batch engine, emitting the
rows of the new bars. Because every feature is truncation invariant (a tested property: the value at
bar t depends only on bars <= t), a streamed row equals the batch row for that bar exactly.

Cost per micro-batch is linear in the symbol's history; micro-batching amortizes it (see the
consumer benchmark). After a restart the engine is restored from the persisted bar history
(:meth:`IncrementalFeatureEngine.restore`), not re-seeded from a short window.

Ordering rules per symbol (the consumer applies them; documented in the README):

* a bar with the same open time and identical values as one already seen is a duplicate: ignored;
* the same open time with different values is a conflict: rejected (dead-letter), the first wins;
* a bar older than the newest seen is out of order: rejected (dead-letter);
* gaps are allowed (missing bars simply don't exist, as in the batch path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raytrader.contract import OHLCV
from raytrader.data.bars import Bars, make_frame
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.features.engine import WARM_COLUMN, compute_arrays
from raytrader.features.spec import FeatureSet


class BarRejected(Exception):
    """A bar that breaks the ordering rules; ``reason`` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class _History:
    times: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # ns, open times
    values: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    size: int = 0

    def append(self, times: np.ndarray, values: np.ndarray) -> None:
        need = self.size + len(times)
        if need > len(self.times):
            cap = max(need, 2 * len(self.times), 1024)
            t = np.empty(cap, dtype=np.int64)
            v = np.empty((cap, 5))
            t[: self.size] = self.times[: self.size]
            v[: self.size] = self.values[: self.size]
            self.times, self.values = t, v
        self.times[self.size : need] = times
        self.values[self.size : need] = values
        self.size = need

    @property
    def last_time(self) -> int | None:
        return int(self.times[self.size - 1]) if self.size else None


class IncrementalFeatureEngine:
    """Per-symbol feature state for one timeframe."""

    def __init__(self, feature_set: FeatureSet, timeframe: str | Timeframe) -> None:
        self.feature_set = feature_set
        self.timeframe = Timeframe.parse(timeframe)
        self._hist: dict[str, _History] = {}

    def symbols(self) -> list[str]:
        return sorted(self._hist)

    def has(self, symbol: str) -> bool:
        return symbol in self._hist

    def history_length(self, symbol: str) -> int:
        h = self._hist.get(symbol)
        return h.size if h else 0

    def last_open_time(self, symbol: str) -> pd.Timestamp | None:
        h = self._hist.get(symbol)
        t = h.last_time if h else None
        return None if t is None else pd.Timestamp(t, unit="ns", tz="UTC")

    def restore(self, symbol: str, bars: Bars) -> None:
        """Replace ``symbol``'s state with ``bars`` (its persisted history, oldest first)."""
        h = _History()
        h.append(
            bars.index.asi8.astype(np.int64), bars.frame[list(OHLCV)].to_numpy(dtype=np.float64)
        )
        self._hist[symbol] = h

    def classify(self, symbol: str, open_ns: int, values: np.ndarray) -> str:
        """``"new"``, ``"duplicate"``; raises :class:`BarRejected` for conflicts and disorder."""
        h = self._hist.get(symbol)
        if h is None or h.size == 0 or open_ns > h.times[h.size - 1]:
            return "new"
        pos = int(np.searchsorted(h.times[: h.size], open_ns))
        when = pd.Timestamp(open_ns, unit="ns", tz="UTC").isoformat()
        if pos < h.size and h.times[pos] == open_ns:
            if np.array_equal(h.values[pos], values):
                return "duplicate"
            raise BarRejected(
                f"conflicting duplicate: {symbol} bar at {when} already seen with other values"
            )
        last = pd.Timestamp(int(h.times[h.size - 1]), unit="ns", tz="UTC").isoformat()
        raise BarRejected(
            f"out of order: {symbol} bar at {when} is older than the newest seen ({last})"
        )

    def update(self, symbol: str, open_ns: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        """Append new bars (already classified ``"new"``, strictly increasing) and return their
        feature rows: index = bar open times (UTC), columns = the feature set + ``warm``."""
        h = self._hist.setdefault(symbol, _History())
        start = h.size
        h.append(np.asarray(open_ns, dtype=np.int64), np.asarray(values, dtype=np.float64))
        cols = {c: h.values[: h.size, j] for j, c in enumerate(OHLCV)}
        arrays = compute_arrays(self.feature_set, cols)
        idx = pd.DatetimeIndex(
            h.times[start : h.size].astype("datetime64[ns]"), name="timestamp"
        ).tz_localize("UTC")
        block = np.empty((h.size - start, len(arrays)), dtype=np.float64, order="F")
        for j, values in enumerate(arrays.values()):
            block[:, j] = values[start:]
        out = pd.DataFrame(block, index=idx, columns=list(arrays), copy=False)
        out[WARM_COLUMN] = np.arange(start, h.size) >= self.feature_set.warmup
        return out

    def bars(self, symbol: str, calendar: Calendar | str = Calendar.CRYPTO) -> Bars:
        """The symbol's history as validated bars."""
        h = self._hist[symbol]
        idx = pd.DatetimeIndex(h.times[: h.size].astype("datetime64[ns]")).tz_localize("UTC")
        v = h.values[: h.size]
        frame = make_frame(idx, v[:, 0], v[:, 1], v[:, 2], v[:, 3], v[:, 4])
        return Bars.from_frame(frame, symbol=symbol, timeframe=self.timeframe, calendar=calendar)
