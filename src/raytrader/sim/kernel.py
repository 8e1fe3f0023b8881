"""The one simulation kernel: orders, fills, costs, sizing, stops, margin and accounting.

Everything here is numba-compiled. :func:`bar_update` advances one column (one symbol or one parameter
set) by one bar; the whole-series path (:func:`simulate_columns`) and the one-bar-at-a-time path
(:func:`step_columns`, used by the RL env and paper trading) both call it, so they cannot disagree.

Per bar, in order (documented in the README, "Simulation semantics"):

1. **Margin at the open** (margin on): the position carried from the last close is marked at this
   bar's open. If equity there is below the maintenance requirement (``maintenance x |units| x open``,
   the long or the short rate), the gap has gone through the liquidation price: the position is
   closed at the open (slippage and commission apply, reason ``liquidation``) and the pending order is
   cancelled (its target stays the desired one). Like a stop exit, the account then stays flat until
   the target changes (step 5); it is bust only if the gap left equity <= 0 (step 7).
2. **Open** (``next_open`` fill mode): the order decided at the previous bar's close fills at this
   bar's open, adverse slippage applied, commission charged on the traded notional.
3. **Exits inside the bar**: with a position open, stop-loss / take-profit levels (fractions of the
   average entry price) and, with margin on, the liquidation price ``p*`` (where equity equals the
   maintenance requirement: ``p* = -cash / (units x (1 - side x maintenance))``) are checked. The open
   comes first: a stop-loss, then a take-profit, then ``p*`` already beyond the open exits at the open
   (a gap). Otherwise the bar's adverse extreme (low for longs, high for shorts) is assumed to come
   before the favourable one: of the stop-loss and ``p*``, the level the price reaches first (the one
   nearer the open; the stop on a tie) exits at its level; only then is a take-profit inside the bar
   taken. Slippage and commission apply. After any of these exits the position stays flat until the
   target changes (step 5); a liquidation at ``p*`` leaves equity > 0, one at a gapped open may not
   (step 7).
4. **Carry** (margin on, rates > 0): a short pays ``borrow_rate / ppy x |units| x close``; a long
   that borrowed cash (cash < 0) pays ``financing_rate / ppy x -cash``. Booked to the open trade.
5. **Close**: the bar's close-to-close return enters the sizing window, then the target for this bar
   is read. An order is placed only when the target **changes** (NaN = keep the previous target);
   position drift from price moves is not rebalanced, and after a stop exit or a margin call (steps
   1 and 3) the position stays flat until the target changes: the exit leaves the desired target as
   it was, so an unchanged target places no order. With margin on the sizing fraction is capped at
   ``(1 + commission) / (initial_margin + commission)``. In ``close`` fill mode the order fills at
   this close; otherwise it waits for the next open.
6. **Mark**: equity is marked at the close. If it is <= 0 with a position open (without margin, or
   after carry with margin), the position is closed at the close (slippage and commission apply,
   reason ``liquidation``) and the account is bust (step 7).
7. **Bust**: an account whose equity after a liquidation is <= 0 (step 6, or with margin on a gap
   through zero equity in step 1 or 3) stops trading for good: no more orders, equity stays where the
   liquidation left it (the RL environment ends the episode). A margin call that leaves equity > 0
   (the usual case: at ``p*`` the maintenance margin less the exit's costs is left) is no bust: the
   account keeps that equity and trades again once the target changes. Without margin every
   liquidation is step 6's, so every liquidation is a bust, as before margin existed.

Sizing converts a target in [-1, 1] into units: ``units = f x equity / (fill_price x (1 + commission))``
with ``f`` from the sizing rule, equity valued at the fill's reference price, and units truncated toward
zero in ``whole`` mode. Trades are round trips: a run of non-zero position with one sign; scaling in
moves the average entry price, scaling out realizes P&L, and a reversal closes one trade and opens
another. A trade's P&L includes every commission and every carry charge paid on it, so the sum of
trade P&L is the change in equity.
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
S_BUST = 17  # 1 once a liquidation left equity <= 0: the account stops trading for good
S_TRADE_CARRY = 18  # borrow fees and financing paid on the open trade
N_STATE = 19

# ---- trade record (float64 row) --------------------------------------------------------------------
T_COL, T_ENTRY_BAR, T_EXIT_BAR, T_ENTRY_PRICE, T_EXIT_PRICE, T_UNITS = 0, 1, 2, 3, 4, 5
T_PNL, T_RETURN, T_COMMISSION, T_REASON, T_MAX_UNITS, T_CARRY = 6, 7, 8, 9, 10, 11
N_TRADE = 12
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
    "carry",
)
REASON_SIGNAL, REASON_STOP_LOSS, REASON_TAKE_PROFIT, REASON_OPEN, REASON_LIQUIDATION = 0, 1, 2, 3, 4
REASONS = ("signal", "stop_loss", "take_profit", "open", "liquidation")

# ---- parameters (float64 vector) -------------------------------------------------------------------
P_FILL, P_COMM, P_SLIP, P_WHOLE, P_SL, P_TP = 0, 1, 2, 3, 4, 5
P_SIZING, P_S1, P_S2, P_S3, P_PPY, P_CASH, P_LONG_ONLY = 6, 7, 8, 9, 10, 11, 12
# margin: on/off, maintenance rates, the sizing cap from initial margin, carry rates per bar (annual
# rate / ppy) and whether either is non-zero
P_MARGIN, P_MM_LONG, P_MM_SHORT, P_FMAX, P_BORROW, P_FINANCE, P_CARRY = 13, 14, 15, 16, 17, 18, 19
N_PARAM = 20
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
    row[T_CARRY] = st[S_TRADE_CARRY]
    st[S_TSLOT] = slot + 1


@nb.njit(cache=True)
def _open_trade(st: np.ndarray, bar: int, units: float, price: float, fee: float) -> None:
    st[S_AVG] = price
    st[S_ENTRY_BAR] = bar
    st[S_TRADE_PNL] = -fee
    st[S_TRADE_COMM] = fee
    st[S_TRADE_MAXU] = abs(units)
    st[S_TRADE_CARRY] = 0.0


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
            st[S_TRADE_CARRY] = 0.0
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
    """Move the position to ``frac`` of the column's equity at reference price ``ref``."""
    order_to_fraction_of(st, trades, col, bar, ref, frac, st[S_CASH] + st[S_UNITS] * ref, params)


@nb.njit(cache=True)
def order_to_fraction_of(
    st: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    ref: float,
    frac: float,
    equity: float,
    params: np.ndarray,
) -> None:
    """Move the position to ``frac`` of ``equity`` (a column's own, or a portfolio's shared by its
    columns) at reference price ``ref``."""
    comm = params[P_COMM]
    slip = params[P_SLIP]
    units = st[S_UNITS]
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
def liquidation_price(units: float, cash: float, mm_long: float, mm_short: float) -> float:
    """The price ``p*`` at which equity equals the maintenance requirement of a position
    (``cash + units x p* = maintenance x |units| x p*``, maintenance ``mm_long`` or ``mm_short`` by
    side); NaN when no price can get there (a long that borrowed nothing). Below it (longs) or above
    it (shorts) the account is liquidated."""
    if units > 0.0:
        if cash >= 0.0:
            return np.nan
        return -cash / (units * (1.0 - mm_long))
    return -cash / (units * (1.0 + mm_short))


@nb.njit(cache=True, inline="always")
def bar_exit(
    units: float, avg: float, liq: float, o: float, h: float, lo: float, sl: float, tp: float
) -> tuple[float, float]:
    """Step 3's exit of a position, as (price before slippage, reason); NaN price: none.

    The open first (a level already beyond it exits at the open: stop-loss, take-profit, then the
    liquidation price ``liq``, NaN for none), then inside the bar the adverse extreme before the
    favourable one; of the stop-loss and the liquidation price the one nearer the open is reached
    first (the stop on a tie). Scalars only: numba reference-counts array arguments, a cost every
    bar, so the arrays are touched only when there is an exit."""
    side = 1.0 if units > 0.0 else -1.0
    sl_level = avg * (1.0 - side * sl)
    tp_level = avg * (1.0 + side * tp)
    adverse = lo if side > 0.0 else h
    favourable = h if side > 0.0 else lo
    has_liq = not math.isnan(liq)
    if sl > 0.0 and side * (o - sl_level) <= 0.0:
        return o, REASON_STOP_LOSS
    if tp > 0.0 and side * (o - tp_level) >= 0.0:
        return o, REASON_TAKE_PROFIT
    if has_liq and side * (o - liq) < 0.0:
        return o, REASON_LIQUIDATION
    hit_sl = sl > 0.0 and side * (adverse - sl_level) <= 0.0
    hit_liq = has_liq and side * (adverse - liq) < 0.0
    if hit_liq and not (hit_sl and side * (sl_level - liq) >= 0.0):  # p* comes first
        return liq, REASON_LIQUIDATION
    if hit_sl:
        return sl_level, REASON_STOP_LOSS
    if tp > 0.0 and side * (favourable - tp_level) >= 0.0:
        return tp_level, REASON_TAKE_PROFIT
    return np.nan, REASON_STOP_LOSS


@nb.njit(cache=True, inline="always")
def _carry(units: float, cash: float, c: float, borrow: float, finance: float) -> float:
    """Step 4's charge for one bar: a short's borrow fee on its notional at the close, a long's
    financing on the cash it borrowed (rates per bar: annual rate / ppy)."""
    if units < 0.0:
        return borrow * -units * c
    return finance * -cash if cash < 0.0 else 0.0


@nb.njit(cache=True, inline="always")
def _bust(st: np.ndarray, equity: float) -> None:
    """Step 7: the account stops trading for good; every later bar returns ``equity``."""
    st[S_BUST] = 1.0
    st[S_PENDING] = np.nan
    st[S_EQUITY] = equity


@nb.njit(cache=True)
def _close_out(
    st: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    price: float,
    reason: float,
    params: np.ndarray,
) -> float:
    """Close the whole position at ``price`` (slippage applied here). A liquidation (a margin call)
    also cancels the pending order, and the account is bust (step 7) when it leaves equity <= 0.
    Returns equity after it."""
    units = st[S_UNITS]
    side = 1.0 if units > 0.0 else -1.0
    fill(
        st, trades, col, bar, -units, price * (1.0 - side * params[P_SLIP]), params[P_COMM], reason
    )
    equity: float = st[S_CASH]
    if reason == REASON_LIQUIDATION:
        st[S_PENDING] = np.nan
        if equity <= 0.0:
            _bust(st, equity)
    return equity


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
def observe_close(st: np.ndarray, ring: np.ndarray, c: float, params: np.ndarray) -> None:
    """Step 5's first half: the bar's close-to-close return enters the sizing window (only the
    sizings that read it keep one), and ``c`` becomes the last close."""
    prev = st[S_PREV_CLOSE]
    if params[P_SIZING] != SIZING_FIXED and not math.isnan(prev):
        n = ring.shape[0]
        pos = int(st[S_RING_POS])
        ring[pos] = c / prev - 1.0
        pos += 1
        st[S_RING_POS] = 0 if pos == n else pos
        st[S_NRET] = min(st[S_NRET] + 1.0, float(n))
    st[S_PREV_CLOSE] = c


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
    """Step 5's decision at a bar's close: ``target`` (NaN keeps the previous one) becomes the
    desired position; an order is placed only when it changes (``close`` mode fills it at ``c``,
    ``next_open`` mode leaves it pending for the next open)."""
    decide_weighted(
        st, ring, trades, col, bar, c, target, params, 1.0, st[S_CASH] + st[S_UNITS] * c
    )


@nb.njit(cache=True, inline="always")
def decide_weighted(
    st: np.ndarray,
    ring: np.ndarray,
    trades: np.ndarray,
    col: int,
    bar: int,
    c: float,
    target: float,
    params: np.ndarray,
    weight: float,
    equity: float,
) -> None:
    """:func:`decide` for one column of a portfolio: the sized fraction and the initial-margin cap
    are scaled by the column's ``weight`` (its share of the portfolio's equity; 1.0 for a column
    that is an account of its own), and a ``close`` fill sizes against ``equity``."""
    t = target
    if math.isnan(t):
        t = st[S_DESIRED]
    if params[P_LONG_ONLY] != 0.0 and t < 0.0:
        t = 0.0
    if t != st[S_DESIRED]:
        frac = _sizing_fraction(t, st, ring, params)
        if not math.isnan(frac):
            fmax = params[P_FMAX] * weight  # initial margin (inf without margin)
            frac = min(max(frac * weight, -fmax), fmax)
            st[S_DESIRED] = t
            if params[P_FILL] == FILL_CLOSE:
                order_to_fraction_of(st, trades, col, bar, c, frac, equity, params)
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
    # the per-bar checks read scalars; the array-taking calls happen only when something trades:
    # even a call that returns at once costs ~10 ns a bar (numba reference-counts array arguments)
    margin = params[P_MARGIN] != 0.0
    units = st[S_UNITS]
    if margin and units != 0.0:  # step 1: a gap through the liquidation price
        liq = liquidation_price(units, st[S_CASH], params[P_MM_LONG], params[P_MM_SHORT])
        if not math.isnan(liq) and (o < liq if units > 0.0 else o > liq):
            _close_out(st, trades, col, bar, o, REASON_LIQUIDATION, params)
            if st[S_BUST] != 0.0:  # the gap went through zero equity
                return float(st[S_EQUITY])
            units = 0.0  # the pending order is cancelled; flat until the target changes
    if params[P_FILL] == FILL_NEXT_OPEN:
        pending = st[S_PENDING]
        if not math.isnan(pending):
            st[S_PENDING] = np.nan
            _order_to_fraction(st, trades, col, bar, o, pending, params)
            units = st[S_UNITS]
    sl = params[P_SL]
    tp = params[P_TP]
    if units != 0.0 and (margin or sl > 0.0 or tp > 0.0):  # step 3
        liq = np.nan
        if margin:
            liq = liquidation_price(units, st[S_CASH], params[P_MM_LONG], params[P_MM_SHORT])
        price, reason = bar_exit(units, st[S_AVG], liq, o, h, lo, sl, tp)
        if not math.isnan(price):
            _close_out(st, trades, col, bar, price, reason, params)
            if st[S_BUST] != 0.0:  # a liquidation that left equity <= 0
                return float(st[S_EQUITY])
            units = 0.0  # a stop or a margin call: flat until the target changes
    if units != 0.0 and params[P_CARRY] != 0.0:  # step 4
        cost = _carry(units, st[S_CASH], c, params[P_BORROW], params[P_FINANCE])
        st[S_CASH] -= cost
        st[S_TRADE_PNL] -= cost
        st[S_TRADE_CARRY] += cost

    observe_close(st, ring, c, params)
    decide(st, ring, trades, col, bar, c, target, params)

    units = st[S_UNITS]
    equity: float = st[S_CASH] + units * c
    if equity <= 0.0 and units != 0.0:  # step 6: liquidated and bust (step 7)
        equity = _close_out(st, trades, col, bar, c, REASON_LIQUIDATION, params)
        _bust(st, equity)
        return equity
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
    so changes + 1 (the open trade) + 1 (a liquidation) bounds the records: an exit (a stop, a margin
    call, however many) closes a trade that an order opened and opens none itself.
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
    is updated, and the close marking and liquidation that follow it do not read it (a bust
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
