"""Shared, seeded builders for the sim / backtest / features / strategies tests.

* ``goog`` / ``eurusd``: the bundled real data sets (session-scoped, loaded once).
* ``synthetic_bars(n, seed, timeframe)``: a cached factory of seeded synthetic bars.
* :func:`make_bars`: hand-crafted :class:`Bars` from lists of OHLC values.
* :func:`ohlc`: the four price arrays of a :class:`Bars`, in kernel argument order.
* :func:`random_targets`: seeded piecewise-constant target paths (with NaN "keep previous" cells).
* ``image``: the raytrader image, built once per session (``tests/support/image.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from raytrader.data import Bars, Calendar, Timeframe, load_bars
from raytrader.data.bars import make_frame
from raytrader.data.synthetic import synthetic_bars as _synthetic_bars
from tests.support.image import image  # noqa: F401 - the session's image, for deploy/ and cluster/

BASE_TIME = pd.Timestamp("2024-01-01 00:00", tz="UTC")

# what the commands under test record goes to a throwaway store, never a developer's own (the
# process environment wins over the local stack's client.env; subprocesses inherit it)
os.environ["RAYTRADER_DB_URL"] = (
    f"sqlite:///{tempfile.mkdtemp(prefix='raytrader-test-store-')}/experiments.db"
)


def make_bars(
    open_: Sequence[float],
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    close: Sequence[float] | None = None,
    volume: Sequence[float] | None = None,
    *,
    timeframe: str = "1d",
    calendar: Calendar | str = Calendar.EQUITY,
    symbol: str = "TEST",
) -> Bars:
    """Validated bars from hand-written values.

    ``close`` defaults to ``open``; ``high``/``low`` default to the candle body (max/min of open and
    close); ``volume`` defaults to 1000 on every bar. Bars start at 2024-01-01 UTC, one per
    ``timeframe``.
    """
    o = np.asarray(open_, dtype=np.float64)
    c = o.copy() if close is None else np.asarray(close, dtype=np.float64)
    h = np.maximum(o, c) if high is None else np.asarray(high, dtype=np.float64)
    lo = np.minimum(o, c) if low is None else np.asarray(low, dtype=np.float64)
    v = np.full(len(o), 1000.0) if volume is None else np.asarray(volume, dtype=np.float64)
    step = Timeframe.parse(timeframe).delta
    index = pd.DatetimeIndex([BASE_TIME + i * step for i in range(len(o))])
    frame = make_frame(index, o, h, lo, c, v)
    return Bars.from_frame(
        frame, symbol=symbol, timeframe=timeframe, calendar=calendar, source="test"
    )


def ohlc(bars: Bars) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(open, high, low, close) float64 arrays of ``bars``."""
    return tuple(bars.column(c) for c in ("open", "high", "low", "close"))  # type: ignore[return-value]


def random_targets(
    n: int,
    seed: int,
    k: int | None = None,
    *,
    levels: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0),
    p_change: float = 0.05,
    p_nan: float = 0.02,
) -> np.ndarray:
    """Seeded piecewise-constant targets, (n,) or (n x k); ``p_nan`` of the cells are NaN."""
    rng = np.random.default_rng(seed)
    cols = 1 if k is None else k
    out = np.empty((n, cols))
    for j in range(cols):
        change = rng.random(n) < p_change
        change[0] = True
        values = rng.choice(np.asarray(levels, dtype=np.float64), size=n)
        idx = np.maximum.accumulate(np.where(change, np.arange(n), 0))
        col = values[idx]
        col[rng.random(n) < p_nan] = np.nan
        out[:, j] = col
    return out[:, 0] if k is None else out


@pytest.fixture(scope="session")
def goog() -> Bars:
    """Alphabet daily bars bundled with backtesting.py (2148 bars, equity calendar, ppy 252)."""
    return load_bars("goog")


@pytest.fixture(scope="session")
def eurusd() -> Bars:
    """EUR/USD hourly bars bundled with backtesting.py (5000 bars, fx calendar, ppy 6240)."""
    return load_bars("eurusd")


@lru_cache(maxsize=32)
def _cached_synthetic(n: int, seed: int, timeframe: str) -> Bars:
    return _synthetic_bars(n_bars=n, seed=seed, timeframe=timeframe)


@pytest.fixture(scope="session")
def synthetic_bars() -> Callable[..., Bars]:
    """Factory ``synthetic_bars(n=5000, seed=3, timeframe="1m")`` of seeded synthetic bars (cached)."""

    def factory(n: int = 5000, seed: int = 3, timeframe: str = "1m") -> Bars:
        return _cached_synthetic(int(n), int(seed), str(timeframe))

    return factory
