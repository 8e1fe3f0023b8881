"""Classification labels for the sign of a forward return, and the bar where each label's horizon ends.

Notation: ``c`` is the close series, ``i`` a bar (its position), ``h >= 1`` the horizon in bars. A label
is decided *at* bar ``i`` (after its close) and is built from ``c[i]`` and closes of the bars
``i+1 .. i+h`` only: nothing before ``i`` except the triple-barrier volatility estimate (which is known
at ``i``) and nothing after ``i+h``. The last ``h`` bars (``i > n-1-h``) have no label (NaN): their
horizon runs past the data.

Fixed-horizon sign label (:func:`fixed_horizon_labels`)
    ``r_i = c[i+h] / c[i] - 1``;  ``y_i = +1`` if ``r_i > m``, ``-1`` if ``r_i < -m``, else ``0``
    (``m = min_return >= 0``; with ``m = 0`` only an unchanged close gives 0).
    The label looks at bars ``i+1 .. i+h`` and its horizon ends at ``end_i = i + h``.

Triple-barrier label (:func:`triple_barrier_labels`, López de Prado, *Advances in Financial Machine
Learning*, ch. 3)
    ``s_i`` = population standard deviation (ddof=0) of the ``w = vol_window`` one-bar log returns
    ``ln(c[k] / c[k-1])`` for ``k = i-w+1 .. i`` (per bar, not scaled by the horizon; undefined, so
    no label, for ``i < w``). Along the path ``R_ij = ln(c[j] / c[i])``, ``j = i+1 .. i+h``:

    * the *upper* barrier is touched at the first ``j`` with ``R_ij >= upper * s_i`` and
      ``R_ij > 0``;
    * the *lower* barrier at the first ``j`` with ``R_ij <= -lower * s_i`` and ``R_ij < 0``;
    * the *vertical* barrier is ``j = i + h``.

    ``y_i = +1`` if the upper barrier is touched first, ``-1`` if the lower one is (both cannot be
    touched on the same close), and if neither is touched by ``i+h``: ``sign(R_i,i+h)`` with
    ``vertical="sign"`` or ``0`` with ``vertical="zero"``. ``end_i`` is the touching bar ``j``, or
    ``i + h`` at the vertical barrier. Barriers are checked on closes only (not intrabar highs/lows).

:class:`Labels` carries ``end`` so cross-validation can purge training samples whose horizon reaches
into a test window (:mod:`raytrader.models.supervised.walkforward`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba as nb
import numpy as np
import pandas as pd

from raytrader.errors import ConfigError

NO_END = -1
"""``Labels.end`` of a bar without a label."""


@dataclass(frozen=True, eq=False)
class Labels:
    """Labels of ``n`` bars: ``values`` (float64: -1.0, 0.0, +1.0 or NaN where there is no label) and
    ``end`` (int64: the last bar the label looks at, ``NO_END`` where there is no label)."""

    values: np.ndarray
    end: np.ndarray
    kind: str
    horizon: int

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of the bars that have a label."""
        mask: np.ndarray = ~np.isnan(self.values)
        return mask

    def __len__(self) -> int:
        return len(self.values)


def _check_close(close: np.ndarray | pd.Series) -> np.ndarray:
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 1:
        raise ConfigError(f"labels need a 1-D close series, got shape {c.shape}")
    bad = ~np.isfinite(c) | (c <= 0.0)
    if bad.any():
        first = int(np.argmax(bad))
        raise ConfigError(
            f"labels need finite positive closes; close[{first}] = {float(c[first])!r} "
            f"({int(bad.sum())} bad value(s))"
        )
    return c


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(f"label horizon must be an integer >= 1 bar, got {horizon!r}")
    return int(horizon)


def fixed_horizon_labels(
    close: np.ndarray | pd.Series, horizon: int, *, min_return: float = 0.0
) -> Labels:
    """Sign of the ``horizon``-bar forward simple return (definition in the module docstring)."""
    h = _check_horizon(horizon)
    if not np.isfinite(min_return) or min_return < 0.0:
        raise ConfigError(f"min_return must be a finite number >= 0, got {min_return!r}")
    c = _check_close(close)
    n = len(c)
    values = np.full(n, np.nan)
    end = np.full(n, NO_END, dtype=np.int64)
    if n > h:
        r = c[h:] / c[:-h] - 1.0
        values[: n - h] = np.where(r > min_return, 1.0, np.where(r < -min_return, -1.0, 0.0))
        end[: n - h] = np.arange(h, n, dtype=np.int64)
    return Labels(values=values, end=end, kind="fixed_horizon", horizon=h)


def rolling_volatility(close: np.ndarray | pd.Series, window: int) -> np.ndarray:
    """``s_i``: population std of the ``window`` one-bar log returns ending at bar ``i`` (NaN for
    ``i < window``)."""
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ConfigError(f"vol_window must be an integer >= 2 bars, got {window!r}")
    c = _check_close(close)
    logret = np.full(len(c), np.nan)
    logret[1:] = np.diff(np.log(c))
    vol = pd.Series(logret).rolling(int(window), min_periods=int(window)).std(ddof=0)
    return vol.to_numpy(dtype=np.float64)


@nb.njit(cache=True)
def _barrier_walk(
    logc: np.ndarray, vol: np.ndarray, h: int, upper: float, lower: float, zero_vertical: bool
) -> tuple[np.ndarray, np.ndarray]:
    n = logc.shape[0]
    values = np.full(n, np.nan)
    end = np.full(n, -1, dtype=np.int64)
    for i in range(n - h):
        s = vol[i]
        if np.isnan(s):
            continue
        label = np.nan
        stop = i + h
        for j in range(i + 1, i + h + 1):
            r = logc[j] - logc[i]
            if r > 0.0 and r >= upper * s:
                label = 1.0
                stop = j
                break
            if r < 0.0 and r <= -lower * s:
                label = -1.0
                stop = j
                break
        if np.isnan(label):
            r = logc[i + h] - logc[i]
            label = 0.0 if zero_vertical or r == 0.0 else (1.0 if r > 0.0 else -1.0)
        values[i] = label
        end[i] = stop
    return values, end


def triple_barrier_labels(
    close: np.ndarray | pd.Series,
    horizon: int,
    *,
    upper: float = 1.0,
    lower: float = 1.0,
    vol_window: int = 20,
    vertical: Literal["sign", "zero"] = "sign",
) -> Labels:
    """Triple-barrier labels (definition in the module docstring); ``upper``/``lower`` are multiples of
    the rolling per-bar volatility ``s_i``."""
    h = _check_horizon(horizon)
    for name, mult in (("upper", upper), ("lower", lower)):
        if not np.isfinite(mult) or mult <= 0.0:
            raise ConfigError(f"triple-barrier {name} multiple must be > 0, got {mult!r}")
    if vertical not in ("sign", "zero"):
        raise ConfigError(f"vertical must be 'sign' or 'zero', got {vertical!r}")
    c = _check_close(close)
    vol = rolling_volatility(c, vol_window)
    values, end = _barrier_walk(np.log(c), vol, h, float(upper), float(lower), vertical == "zero")
    return Labels(values=values, end=end, kind="triple_barrier", horizon=h)
