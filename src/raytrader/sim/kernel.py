"""The one simulation kernel: orders, fills, costs, sizing, stops and accounting.

Everything here is numba-compiled. :func:`bar_update` advances one column (one symbol or one parameter
set) by one bar; the whole-series path (:func:`simulate_columns`) and the one-bar-at-a-time path
(:func:`step_columns`, used by the RL env and paper trading) both call it, so they cannot disagree.

Per bar, in order (documented in the README, "Simulation semantics"):

1. **Open** (``next_open`` fill mode): the order decided at the previous bar's close fills at this
   bar's open, adverse slippage applied, commission charged on the traded notional.
2. **Stops**: with a position open, stop-loss / take-profit levels (fractions of the average entry
   price) are checked. The open comes first: if it is already beyond a level, that exit fills at the
   open (a gap). Otherwise, inside the bar, the adverse extreme (low for longs, high for shorts) is
   assumed to come before the favourable one, so if both levels lie inside the bar the stop-loss
   wins (pessimistic) and fills at its level. Slippage and commission apply.
3. **Close**: the bar's close-to-close return enters the sizing window, then the target for this bar is
   read. An order is placed only when the target **changes** (NaN = keep the previous target); position
   drift from price moves is not rebalanced, and after a stop exit the position stays flat until the
   target changes. In ``close`` fill mode the order fills at this close; otherwise it waits for the next
   open. Equity is marked at the close.
4. **Liquidation**: if equity at the close is <= 0 with a position open, the position is closed at the
   close (slippage and commission apply, reason ``liquidation``) and the account stops trading.

Sizing converts a target in [-1, 1] into units: ``units = f x equity / (fill_price x (1 + commission))``
with ``f`` from the sizing rule, equity valued at the fill's reference price, and units truncated toward
zero in ``whole`` mode. Trades are round trips: a run of non-zero position with one sign; scaling in
moves the average entry price, scaling out realizes P&L, and a reversal closes one trade and opens
another. A trade's P&L includes every commission paid on it.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

# ---- per-column state (float64 vector) -------------------------------------------------------------
S_CASH, S_UNITS, S_AVG, S_DESIRED, S_PENDING = 0, 1, 2, 3, 4
S_ENTRY_BAR, S_TRADE_PNL, S_TRADE_MAXU, S_TRADE_COMM = 5, 6, 7, 8
S_PREV_CLOSE, S_NRET, S_RING_POS, S_TSLOT, S_TEND, S_EQUITY, S_EXPOSED, S_OVERFLOW = (
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
)
S_BUST = 17
N_STATE = 18

# ---- trade record (float64 row) --------------------------------------------------------------------
T_COL, T_ENTRY_BAR, T_EXIT_BAR, T_ENTRY_PRICE, T_EXIT_PRICE, T_UNITS = 0, 1, 2, 3, 4, 5
T_PNL, T_RETURN, T_COMMISSION, T_REASON, T_MAX_UNITS = 6, 7, 8, 9, 10
N_TRADE = 11
TRADE_FIELDS = (
    "column",
    "entry_bar",
    "exit_bar",
    "entry_price",
    "exit_price",
    "units",
    "pnl",
    "return",
    "commission",
    "reason",
    "max_units",
)
REASON_SIGNAL, REASON_STOP_LOSS, REASON_TAKE_PROFIT, REASON_OPEN, REASON_LIQUIDATION = 0, 1, 2, 3, 4
REASONS = ("signal", "stop_loss", "take_profit", "open", "liquidation")

# ---- parameters (float64 vector) -------------------------------------------------------------------
P_FILL, P_COMM, P_SLIP, P_WHOLE, P_SL, P_TP = 0, 1, 2, 3, 4, 5
P_SIZING, P_S1, P_S2, P_S3, P_PPY, P_CASH, P_LONG_ONLY = 6, 7, 8, 9, 10, 11, 12
N_PARAM = 13
FILL_NEXT_OPEN, FILL_CLOSE = 0.0, 1.0
SIZING_FIXED, SIZING_VOL, SIZING_KELLY = 0.0, 1.0, 2.0


@nb.njit(cache=True)
def init_state(st: np.ndarray, params: np.ndarray, tslot: int, tend: int) -> None:
    """Reset one column's state: all cash, flat, target 0, no pending order."""
    st[:] = 0.0
    st[S_CASH] = params[P_CASH]
    st[S_PENDING] = np.nan
    st[S_PREV_CLOSE] = np.nan
    st[S_TSLOT] = tslot
    st[S_TEND] = tend
    st[S_EQUITY] = params[P_CASH]


@nb.njit(cache=True)
def _write_trade(
    st: np.ndarray,
    trades: np.ndarray,
    col: int,
    exit_bar: int,
    exit_price: float,
    units: float,
    pnl: float,
    reason: float,
) -> None:
    slot = int(st[S_TSLOT])
    if slot >= int(st[S_TEND]):
        st[S_OVERFLOW] = 1.0
        return
    row = trades[slot]
    row[T_COL] = col
    row[T_ENTRY_BAR] = st[S_ENTRY_BAR]
    row[T_EXIT_BAR] = exit_bar
    row[T_ENTRY_PRICE] = st[S_AVG]
    row[T_EXIT_PRICE] = exit_price
    row[T_UNITS] = units
    row[T_PNL] = pnl
    basis = st[S_AVG] * st[S_TRADE_MAXU]
    row[T_RETURN] = pnl / basis if basis > 0.0 else 0.0
    row[T_COMMISSION] = st[S_TRADE_COMM]
    row[T_REASON] = reason
    row[T_MAX_UNITS] = st[S_TRADE_MAXU]
    st[S_TSLOT] = slot + 1


@nb.njit(cache=True)
def _open_trade(st: np.ndarray, bar: int, units: float, price: float, fee: float) -> None:
    st[S_AVG] = price
    st[S_ENTRY_BAR] = bar
    st[S_TRADE_PNL] = -fee
    st[S_TRADE_COMM] = fee
    st[S_TRADE_MAXU] = abs(units)


@nb.njit(cache=True)
def fill(
    st: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    delta: float,
    price: float,
    commission: float,
    reason: float,
) -> None:
    """Trade ``delta`` units at ``price`` (slippage already applied) and do the trade accounting."""
    units = st[S_UNITS]
    fee = abs(delta) * price * commission
    st[S_CASH] -= delta * price + fee
    new_units = units + delta
    if units == 0.0:
        _open_trade(st, bar, new_units, price, fee)
    elif new_units != 0.0 and (new_units > 0.0) == (units > 0.0):
        if abs(new_units) > abs(units):  # scale in
            st[S_AVG] = (st[S_AVG] * abs(units) + price * abs(delta)) / abs(new_units)
            st[S_TRADE_MAXU] = max(st[S_TRADE_MAXU], abs(new_units))
            st[S_TRADE_PNL] -= fee
        else:  # scale out: realize P&L on the reduced part
            st[S_TRADE_PNL] += (price - st[S_AVG]) * (-delta) - fee
        st[S_TRADE_COMM] += fee
    else:  # close to flat, or reverse
        share = abs(units) / abs(delta)
        fee_close = fee * share
        st[S_TRADE_COMM] += fee_close
        pnl = st[S_TRADE_PNL] + (price - st[S_AVG]) * units - fee_close
        _write_trade(st, trades, col, bar, price, units, pnl, reason)
        if new_units != 0.0:
            _open_trade(st, bar, new_units, price, fee - fee_close)
        else:
            st[S_AVG] = 0.0
            st[S_TRADE_PNL] = 0.0
            st[S_TRADE_COMM] = 0.0
            st[S_TRADE_MAXU] = 0.0
    st[S_UNITS] = new_units


@nb.njit(cache=True)
def _order_to_fraction(
    st: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    ref: float,
    frac: float,
    params: np.ndarray,
) -> None:
    """Move the position to ``frac`` of equity at reference price ``ref``."""
    comm = params[P_COMM]
    slip = params[P_SLIP]
    units = st[S_UNITS]
    equity = st[S_CASH] + units * ref
    target_units = 0.0
    if frac != 0.0 and equity > 0.0:
        buying = frac * equity / ref > units
        est = ref * (1.0 + slip) if buying else ref * (1.0 - slip)
        target_units = frac * equity / (est * (1.0 + comm))
        if params[P_WHOLE] != 0.0:
            target_units = float(math.trunc(target_units))
    delta = target_units - units
    if delta == 0.0:
        return
    price = ref * (1.0 + slip) if delta > 0.0 else ref * (1.0 - slip)
    fill(st, trades, col, bar, delta, price, comm, REASON_SIGNAL)


@nb.njit(cache=True, inline="always")
def _check_stops(
    st: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    o: float,
    h: float,
    lo: float,
    params: np.ndarray,
) -> None:
    """Stop-loss / take-profit for the open position: the open first (a gap beyond a level fills at
    the open), then inside the bar the adverse extreme before the favourable one."""
    units = st[S_UNITS]
    sl = params[P_SL]
    tp = params[P_TP]
    if units == 0.0 or (sl <= 0.0 and tp <= 0.0):
        return
    side = 1.0 if units > 0.0 else -1.0
    sl_level = st[S_AVG] * (1.0 - side * sl)
    tp_level = st[S_AVG] * (1.0 + side * tp)
    adverse = lo if side > 0.0 else h
    favourable = h if side > 0.0 else lo
    price = np.nan
    reason = REASON_STOP_LOSS
    if sl > 0.0 and side * (o - sl_level) <= 0.0:
        price = o
    elif tp > 0.0 and side * (o - tp_level) >= 0.0:
        price, reason = o, REASON_TAKE_PROFIT
    elif sl > 0.0 and side * (adverse - sl_level) <= 0.0:
        price = sl_level
    elif tp > 0.0 and side * (favourable - tp_level) >= 0.0:
        price, reason = tp_level, REASON_TAKE_PROFIT
    if not math.isnan(price):
        exit_price = price * (1.0 - side * params[P_SLIP])
        fill(st, trades, col, bar, -units, exit_price, params[P_COMM], reason)


@nb.njit(cache=True)
def _sizing_fraction(target: float, st: np.ndarray, ring: np.ndarray, params: np.ndarray) -> float:
    """Fraction of equity for ``target``; NaN while the sizing window is not yet full."""
    mode = params[P_SIZING]
    if target == 0.0:
        return 0.0
    if mode == SIZING_FIXED:
        return float(target * params[P_S1])
    n = ring.shape[0]
    if st[S_NRET] < n:
        return np.nan
    mean = 0.0
    for i in range(n):
        mean += ring[i]
    mean /= n
    var = 0.0
    for i in range(n):
        var += (ring[i] - mean) ** 2
    var /= n - 1
    if mode == SIZING_VOL:
        vol = math.sqrt(var * params[P_PPY])
        lev = params[P_S2] if vol == 0.0 else min(params[P_S2], params[P_S1] / vol)
        return float(target * lev)
    # Kelly: mean/variance of per-bar returns, signed by the side
    if var == 0.0:
        return 0.0
    k = mean / var
    if target < 0.0:
        k = -k
    k = min(max(params[P_S1] * k, 0.0), params[P_S2])
    return float(target * k)


@nb.njit(cache=True, inline="always")
def decide(
    st: np.ndarray,
    ring: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    c: float,
    target: float,
    params: np.ndarray,
) -> None:
    """Step 3's decision at a bar's close: ``target`` (NaN keeps the previous one) becomes the
    desired position; an order is placed only when it changes (``close`` mode fills it at ``c``,
    ``next_open`` mode leaves it pending for the next open)."""
    t = target
    if math.isnan(t):
        t = st[S_DESIRED]
    if params[P_LONG_ONLY] != 0.0 and t < 0.0:
        t = 0.0
    if t != st[S_DESIRED]:
        frac = _sizing_fraction(t, st, ring, params)
        if not math.isnan(frac):
            st[S_DESIRED] = t
            if params[P_FILL] == FILL_CLOSE:
                _order_to_fraction(st, trades, col, bar, c, frac, params)
            else:
                st[S_PENDING] = frac


@nb.njit(cache=True, inline="always")
def bar_update(
    st: np.ndarray,
    ring: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    target: float,
    params: np.ndarray,
) -> float:
    """Advance one column by one bar (see the module docstring); returns equity at the close."""
    if st[S_BUST] != 0.0:
        return float(st[S_EQUITY])
    if params[P_FILL] == FILL_NEXT_OPEN:
        pending = st[S_PENDING]
        if not math.isnan(pending):
            st[S_PENDING] = np.nan
            _order_to_fraction(st, trades, col, bar, o, pending, params)
    # guarded here, not inside: even a call that returns at once costs ~10 ns a bar, because numba
    # reference-counts the array arguments of every call
    if st[S_UNITS] != 0.0 and (params[P_SL] > 0.0 or params[P_TP] > 0.0):
        _check_stops(st, trades, col, bar, o, h, lo, params)

    prev = st[S_PREV_CLOSE]
    if params[P_SIZING] != SIZING_FIXED and not math.isnan(prev):  # only these sizings read it
        n = ring.shape[0]
        pos = int(st[S_RING_POS])
        ring[pos] = c / prev - 1.0
        pos += 1
        st[S_RING_POS] = 0 if pos == n else pos
        st[S_NRET] = min(st[S_NRET] + 1.0, float(n))
    st[S_PREV_CLOSE] = c
    decide(st, ring, trades, col, bar, c, target, params)

    units = st[S_UNITS]
    equity: float = st[S_CASH] + units * c
    if equity <= 0.0 and units != 0.0:
        price = c * (1.0 + params[P_SLIP]) if units < 0.0 else c * (1.0 - params[P_SLIP])
        fill(st, trades, col, bar, -units, price, params[P_COMM], REASON_LIQUIDATION)
        st[S_BUST] = 1.0
        st[S_PENDING] = np.nan
        units = 0.0
        equity = st[S_CASH]
    st[S_EQUITY] = equity
    if units != 0.0:
        st[S_EXPOSED] += 1.0
    return equity


@nb.njit(cache=True)
def finalize_open_trade(
    st: np.ndarray, trades: np.ndarray, col: int, bar: int, close: float
) -> None:
    """Write the still-open trade (if any) valued at ``close``, without exit costs, reason ``open``."""
    units = st[S_UNITS]
    if units == 0.0:
        return
    pnl = st[S_TRADE_PNL] + (close - st[S_AVG]) * units
    _write_trade(st, trades, col, bar, close, units, pnl, REASON_OPEN)


def _simulate_columns(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    params: np.ndarray,
    ring_len: int,
    trade_offsets: np.ndarray,
    positions_out: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole-series path over every row of ``targets`` (n_cols x n_bars, column-major layout).

    Price arrays are (1 x n_bars), shared by all columns, or (n_cols x n_bars). Returns equity
    (n_cols x n_bars), units held at each close (same shape, or 1x1 when ``positions_out`` is False),
    the trade records and the final states.
    """
    k, n = targets.shape
    stride = 0 if open_.shape[0] == 1 else 1
    equity = np.empty((k, n))
    positions = np.empty((k, n)) if positions_out else np.empty((1, 1))
    trades = np.full((trade_offsets[k], N_TRADE), np.nan)
    states = np.empty((k, N_STATE))
    for j in nb.prange(k):
        p = j * stride
        st = states[j]
        ring = np.zeros(ring_len)
        init_state(st, params, trade_offsets[j], trade_offsets[j + 1])
        o, h, lo, c, tg, eq = open_[p], high[p], low[p], close[p], targets[j], equity[j]
        for i in range(n):
            eq[i] = bar_update(st, ring, trades, j, i, o[i], h[i], lo[i], c[i], tg[i], params)
            if positions_out:
                positions[j, i] = st[S_UNITS]
        finalize_open_trade(st, trades, j, n - 1, c[n - 1])
    return equity, positions, trades, states


def _trade_capacity(targets: np.ndarray) -> np.ndarray:
    """Per-column upper bound of trade records (n_cols x n_bars targets), as cumulative offsets.

    Every trade opens with an order, and an order needs a change of the (NaN-forward-filled) target,
    so changes + 1 (the open trade) + 1 (a liquidation) bounds the records.
    """
    k, n = targets.shape
    counts = np.zeros(k + 1, dtype=np.int64)
    for j in nb.prange(k):
        prev = 0.0
        c = 2
        for i in range(n):
            t = targets[j, i]
            if not math.isnan(t):
                if t != prev:
                    c += 1
                prev = t
        counts[j + 1] = c
    return np.cumsum(counts)


# The same bodies compiled twice: threads pay off only for many columns, and waking numba's thread
# pool costs milliseconds, so narrow inputs (one backtest, one RL env) run single-threaded.
PARALLEL_MIN_COLUMNS = 64


def twin(fn: Callable[..., Any], suffix: str) -> Callable[..., Any]:
    """A copy of ``fn`` under another name. numba's on-disk cache is keyed by the function's
    qualified name and signature, not by ``parallel=``, so the serial and parallel compilations of
    one body must carry different names or they load each other's machine code."""
    name = f"{fn.__name__}_{suffix}"
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    copy = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return copy


class Twins:
    """One function body compiled serial and parallel; calls pick by the number of columns."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.serial = nb.njit(cache=True)(twin(fn, "serial"))
        self.parallel = nb.njit(cache=True, parallel=True)(twin(fn, "parallel"))

    def __call__(self, n_columns: int, *args: Any) -> Any:
        fn = self.parallel if n_columns >= PARALLEL_MIN_COLUMNS else self.serial
        return fn(*args)


_SIMULATE = Twins(_simulate_columns)
_CAPACITY = Twins(_trade_capacity)


def simulate_columns(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    params: np.ndarray,
    ring_len: int,
    trade_offsets: np.ndarray,
    positions_out: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """See :func:`_simulate_columns` (serial below ``PARALLEL_MIN_COLUMNS`` columns)."""
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = _SIMULATE(
        targets.shape[0],
        open_,
        high,
        low,
        close,
        targets,
        params,
        ring_len,
        trade_offsets,
        positions_out,
    )
    return out


def trade_capacity(targets: np.ndarray) -> np.ndarray:
    """See :func:`_trade_capacity`."""
    out: np.ndarray = _CAPACITY(targets.shape[0], targets)
    return out


@nb.njit(cache=True)
def step_columns(
    states: np.ndarray,
    rings: np.ndarray,
    trades: np.ndarray,
    bar: int,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    params: np.ndarray,
    equity_out: np.ndarray,
) -> None:
    """One-bar path: advance every column by one bar (prices per column)."""
    for j in range(states.shape[0]):
        equity_out[j] = bar_update(
            states[j],
            rings[j],
            trades,
            j,
            bar,
            open_[j],
            high[j],
            low[j],
            close[j],
            targets[j],
            params,
        )


@nb.njit(cache=True)
def decide_columns(
    states: np.ndarray,
    rings: np.ndarray,
    trades: np.ndarray,
    bar: int,
    close: np.ndarray,
    targets: np.ndarray,
    params: np.ndarray,
) -> None:
    """The decision of every column at the close of ``bar``, after the bar was advanced with NaN
    targets (``next_open`` mode only, where a decision places no fill; the RL environment uses this
    to act on the close it observed). Gives the same orders, trades and equity as passing the
    targets to :func:`step_columns` for that bar: there the decision comes after the sizing window
    is updated, and the close marking and liquidation that follow it do not read it (a liquidated
    account ignores later decisions either way)."""
    for j in range(states.shape[0]):
        if states[j, S_BUST] == 0.0:
            decide(states[j], rings[j], trades, j, bar, close[j], targets[j], params)


@nb.njit(cache=True)
def step_selected(
    states: np.ndarray,
    rings: np.ndarray,
    trades: np.ndarray,
    bar: int,
    columns: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    params: np.ndarray,
    equity_out: np.ndarray,
) -> None:
    """:func:`step_columns` for the listed columns only (prices and targets per listed column);
    the vectorized environment starts new episodes in some columns while others run on."""
    for i in range(columns.shape[0]):
        j = columns[i]
        equity_out[j] = bar_update(
            states[j],
            rings[j],
            trades,
            j,
            bar,
            open_[i],
            high[i],
            low[i],
            close[i],
            targets[i],
            params,
        )
