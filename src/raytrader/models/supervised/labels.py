"""Classification labels for the sign of a forward return, and the bar where each label's horizon ends.

Notation: ``o`` and ``c`` are the open and close series, ``i`` a bar (its position), ``h >= 1`` the
horizon in bars, ``n`` the number of bars. A label is decided *at* bar ``i`` (after its close, where
a strategy decides its target) and is built only from prices a position opened then would see.

Entry and exit (``entry``)
    ``"open"`` (default) matches the simulation kernel's ``fill="next_open"``: the order decided at
    bar ``i``'s close fills at ``e_i = o[i+1]``; the position is held over bars ``i+1 .. i+h`` and
    the exit order decided at bar ``i+h``'s close fills at ``x_i = o[i+1+h]``. The label looks at
    bars ``i+1 .. i+1+h``; the last ``h+1`` bars (``i > n-2-h``) have no label (NaN).
    ``"close"`` is the close-to-close label (what ``fill="close"`` would earn): ``e_i = c[i]``,
    ``x_i = c[i+h]``; it looks at bars ``i+1 .. i+h``, and the last ``h`` bars have no label.
    Nothing before ``i`` is used except the triple-barrier volatility estimate (known at ``i``).

Fixed-horizon sign label (:func:`fixed_horizon_labels`)
    ``r_i = x_i / e_i - 1``;  ``y_i = +1`` if ``r_i > m``, ``-1`` if ``r_i < -m``, else ``0``
    (``m = min_return >= 0``; with ``m = 0`` only an unchanged price gives 0).
    Its horizon ends at ``end_i = i + 1 + h`` (``"open"``) or ``i + h`` (``"close"``).

Triple-barrier label (:func:`triple_barrier_labels`, López de Prado, *Advances in Financial Machine
Learning*, ch. 3)
    ``s_i`` = population standard deviation (ddof=0) of the ``w = vol_window`` one-bar log returns
    ``ln(c[k] / c[k-1])`` for ``k = i-w+1 .. i`` (per bar, not scaled by the horizon; undefined, so
    no label, for ``i < w``). Along the path of closes while the position is held,
    ``R_ij = ln(c[j] / e_i)``, ``j = i+1 .. i+h``:

    * the *upper* barrier is touched at the first ``j`` with ``R_ij >= upper * s_i`` and
      ``R_ij > 0``;
    * the *lower* barrier at the first ``j`` with ``R_ij <= -lower * s_i`` and ``R_ij < 0``;
    * the *vertical* barrier is the exit after ``h`` bars, at ``x_i``.

    ``y_i = +1`` if the upper barrier is touched first, ``-1`` if the lower one is (both cannot be
    touched on the same close), and if neither is touched by ``i+h``: ``sign(ln(x_i / e_i))`` with
    ``vertical="sign"`` or ``0`` with ``vertical="zero"``. ``end_i`` is the touching bar ``j``, or
    at the vertical barrier the exit bar, ``i + 1 + h`` (``"open"``; with ``vertical="zero"`` one bar
    more than the label reads, which only purges more) or ``i + h`` (``"close"``). Barriers are
    checked on closes only (not intrabar highs/lows); with ``"close"`` ``e_i = c[i]``, so the path
    is ``ln(c[j] / c[i])`` as in the book.

:class:`Labels` carries ``end`` so cross-validation can purge training samples whose horizon reaches
into a test window (:mod:`raytrader.models.supervised.walkforward`). Cutting bars off the end only
removes labels at the end: a label that exists is the same on any longer series (tested).
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

Entry = Literal["open", "close"]
"""Where a label's trade enters and exits (module docstring): the next bar's open, or the close."""


@dataclass(frozen=True, eq=False)
class Labels:
    """Labels of ``n`` bars: ``values`` (float64: -1.0, 0.0, +1.0 or NaN where there is no label) and
    ``end`` (int64: the last bar the label looks at, ``NO_END`` where there is no label)."""

    values: np.ndarray
    end: np.ndarray
    kind: str
    horizon: int
    entry: Entry = "open"

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of the bars that have a label."""
        mask: np.ndarray = ~np.isnan(self.values)
        return mask

    def __len__(self) -> int:
        return len(self.values)


def _check_close(close: np.ndarray | pd.Series, name: str = "close") -> np.ndarray:
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 1:
        raise ConfigError(f"labels need a 1-D {name} series, got shape {c.shape}")
    bad = ~np.isfinite(c) | (c <= 0.0)
    if bad.any():
        first = int(np.argmax(bad))
        raise ConfigError(
            f"labels need finite positive {name}s; {name}[{first}] = {float(c[first])!r} "
            f"({int(bad.sum())} bad value(s))"
        )
    return c


def _prices(
    close: np.ndarray | pd.Series, open_: np.ndarray | pd.Series | None, entry: str, h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(closes, entry price ``e``, exit price ``x``, ``shift``) per bar: ``e[i]``/``x[i]`` as in the
    module docstring, NaN where they lie past the data; ``shift`` = 1 for ``"open"``, else 0, so
    a label at ``i`` exists for ``i + h + shift <= n - 1``."""
    c = _check_close(close)
    n = len(c)
    e, x = np.full(n, np.nan), np.full(n, np.nan)
    if entry == "close":
        e[:] = c
        if n > h:
            x[: n - h] = c[h:]
        return c, e, x, 0
    if entry != "open":
        raise ConfigError(f"entry must be 'open' or 'close', got {entry!r}")
    if open_ is None:
        raise ConfigError(
            "entry='open' labels need the open series (open_=...): the kernel fills at the next "
            "bar's open; pass entry='close' for close-to-close labels"
        )
    o = _check_close(open_, "open")
    if len(o) != n:
        raise ConfigError(f"{len(o)} opens for {n} closes")
    if n > 1:
        e[: n - 1] = o[1:]
    if n > h + 1:
        x[: n - 1 - h] = o[1 + h :]
    return c, e, x, 1


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(f"label horizon must be an integer >= 1 bar, got {horizon!r}")
    return int(horizon)


def fixed_horizon_labels(
    close: np.ndarray | pd.Series,
    horizon: int,
    *,
    open_: np.ndarray | pd.Series | None = None,
    entry: Entry = "open",
    min_return: float = 0.0,
) -> Labels:
    """Sign of the ``horizon``-bar forward simple return from the entry to the exit price
    (definition in the module docstring; ``entry="open"`` needs ``open_``)."""
    h = _check_horizon(horizon)
    if not np.isfinite(min_return) or min_return < 0.0:
        raise ConfigError(f"min_return must be a finite number >= 0, got {min_return!r}")
    c, e, x, shift = _prices(close, open_, entry, h)
    n = len(c)
    values = np.full(n, np.nan)
    end = np.full(n, NO_END, dtype=np.int64)
    m = n - h - shift  # bars 0 .. m-1 have a label
    if m > 0:
        r = x[:m] / e[:m] - 1.0
        values[:m] = np.where(r > min_return, 1.0, np.where(r < -min_return, -1.0, 0.0))
        end[:m] = np.arange(m, dtype=np.int64) + h + shift
    return Labels(values=values, end=end, kind="fixed_horizon", horizon=h, entry=entry)


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
    logc: np.ndarray,
    loge: np.ndarray,
    logx: np.ndarray,
    vol: np.ndarray,
    h: int,
    shift: int,
    upper: float,
    lower: float,
    zero_vertical: bool,
) -> tuple[np.ndarray, np.ndarray]:
    n = logc.shape[0]
    values = np.full(n, np.nan)
    end = np.full(n, -1, dtype=np.int64)
    for i in range(n - h - shift):
        s = vol[i]
        if np.isnan(s):
            continue
        label = np.nan
        stop = i + h + shift
        for j in range(i + 1, i + h + 1):
            r = logc[j] - loge[i]
            if r > 0.0 and r >= upper * s:
                label = 1.0
                stop = j
                break
            if r < 0.0 and r <= -lower * s:
                label = -1.0
                stop = j
                break
        if np.isnan(label):
            r = logx[i] - loge[i]
            label = 0.0 if zero_vertical or r == 0.0 else (1.0 if r > 0.0 else -1.0)
        values[i] = label
        end[i] = stop
    return values, end


def triple_barrier_labels(
    close: np.ndarray | pd.Series,
    horizon: int,
    *,
    open_: np.ndarray | pd.Series | None = None,
    entry: Entry = "open",
    upper: float = 1.0,
    lower: float = 1.0,
    vol_window: int = 20,
    vertical: Literal["sign", "zero"] = "sign",
) -> Labels:
    """Triple-barrier labels (definition in the module docstring); ``upper``/``lower`` are multiples of
    the rolling per-bar volatility ``s_i``; ``entry="open"`` needs ``open_``."""
    h = _check_horizon(horizon)
    for name, mult in (("upper", upper), ("lower", lower)):
        if not np.isfinite(mult) or mult <= 0.0:
            raise ConfigError(f"triple-barrier {name} multiple must be > 0, got {mult!r}")
    if vertical not in ("sign", "zero"):
        raise ConfigError(f"vertical must be 'sign' or 'zero', got {vertical!r}")
    c, e, x, shift = _prices(close, open_, entry, h)
    vol = rolling_volatility(c, vol_window)
    values, end = _barrier_walk(
        np.log(c),
        np.log(e),
        np.log(x),
        vol,
        h,
        shift,
        float(upper),
        float(lower),
        vertical == "zero",
    )
    return Labels(values=values, end=end, kind="triple_barrier", horizon=h, entry=entry)
