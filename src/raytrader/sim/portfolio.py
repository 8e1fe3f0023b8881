"""The kernel for a portfolio: several symbols, one account (shared cash, one margin, one equity).

:func:`portfolio_bar` advances every symbol by one bar with the per-column pieces of
:mod:`raytrader.sim.kernel` (fills, trade accounting, sizing, stops, carry), so a portfolio of one
symbol with weight 1 is the single-symbol kernel, bit for bit (``tests/sim/test_portfolio.py``).
The whole-series path (:func:`simulate_portfolio_rows`, the portfolio backtest) and the one-bar
path (``PortfolioSimulator``, paper trading) both call it.

What sharing one account changes, per bar (README, "Simulation semantics: portfolios"):

* **Marks.** A symbol with no bar at this time (NaN prices: its market is closed, a halt) does not
  trade, is not stopped and pays no carry; its position is marked at its last close.
* **Weights.** A symbol's target in [-1, 1] is scaled by its weight (its share of equity, the
  position limit: weights sum to at most 1), and so is the initial-margin cap, so gross leverage
  never exceeds what the margin allows.
* **One equity.** Orders size against the portfolio's equity: at the open (``next_open``: every
  order of the bar against the equity marked at the opens before the first fill) or at the close
  (``close``: against the equity marked at the closes before the first fill).
* **One margin (cross margin).** At the open, while the account is below its maintenance
  requirement (the sum over positions), positions are liquidated at their opens in symbol order
  until it is not. Inside a bar, a position's liquidation price is where the account would reach
  its requirement with the other positions at their opens. Financing is charged on the account's
  borrowed cash, shared by the long positions in proportion to their notional at the close.
* **Bust.** A liquidation that leaves the account's equity <= 0, or a close where it is <= 0, closes
  every position (reason ``liquidation``) and ends trading for every symbol.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import pandas as pd

from raytrader.errors import ConfigError, RaytraderError
from raytrader.sim import kernel as K
from raytrader.sim.config import SimConfig
from raytrader.sim.engine import check_targets, grow_trade_slots, pack_params, trade_slots

A_CASH, A_EQUITY, A_BUST, A_NFILLS = 0, 1, 2, 3
N_ACCOUNT = 4

# ---- fill record (float64 row): every execution of a bar, for the paper trader's ledger ----------
F_BAR, F_COL, F_UNITS, F_PRICE, F_COMMISSION, F_REASON = 0, 1, 2, 3, 4, 5
N_FILL = 6
#: a bar fills a symbol at most four times: a margin call at the open or the pending order, an
#: exit inside the bar, and the account's liquidation (after a fill at the open, a bust)
FILLS_PER_SYMBOL = 4


@nb.njit(cache=True)
def _log_fill(
    acct: np.ndarray,
    fills: np.ndarray,
    bar: int,
    j: int,
    delta: float,
    price: float,
    commission: float,
    reason: float,
) -> None:
    n = int(acct[A_NFILLS])
    row = fills[n]
    row[F_BAR], row[F_COL], row[F_UNITS], row[F_PRICE] = bar, j, delta, price
    row[F_COMMISSION], row[F_REASON] = abs(delta) * price * commission, reason
    acct[A_NFILLS] = n + 1


@nb.njit(cache=True)
def init_account(
    acct: np.ndarray, states: np.ndarray, params: np.ndarray, offsets: np.ndarray
) -> None:
    """A fresh account: all cash, every symbol flat with its own trade slots ``offsets[j]`` to
    ``offsets[j + 1]``."""
    acct[A_CASH] = params[K.P_CASH]
    acct[A_EQUITY] = params[K.P_CASH]
    acct[A_BUST] = 0.0
    acct[A_NFILLS] = 0.0
    for j in range(states.shape[0]):
        K.init_state(states[j], params, offsets[j], offsets[j + 1])


@nb.njit(cache=True)
def _log_order_fill(
    acct: np.ndarray,
    fills: np.ndarray,
    bar: int,
    j: int,
    before: float,
    after: float,
    ref: float,
    params: np.ndarray,
) -> None:
    """Log the fill of an order at reference price ``ref``, if it traded (the price with the
    slippage the kernel applied to it)."""
    delta = after - before
    if delta != 0.0:
        slip = params[K.P_SLIP]
        price = ref * (1.0 + slip) if delta > 0.0 else ref * (1.0 - slip)
        _log_fill(acct, fills, bar, j, delta, price, params[K.P_COMM], K.REASON_SIGNAL)


@nb.njit(cache=True)
def _others(
    states: np.ndarray, marks: np.ndarray, skip: int, params: np.ndarray, net: bool
) -> float:
    """The value of every position but ``skip``'s at ``marks``; less its maintenance requirement
    when ``net``."""
    total = 0.0
    for j in range(states.shape[0]):
        u = states[j, K.S_UNITS]
        if j == skip or u == 0.0:
            continue
        value = u * marks[j]
        if net:
            mm = params[K.P_MM_LONG] if u > 0.0 else params[K.P_MM_SHORT]
            value -= mm * abs(u) * marks[j]
        total += value
    return total


@nb.njit(cache=True)
def _equity(acct: np.ndarray, states: np.ndarray, marks: np.ndarray) -> float:
    equity: float = acct[A_CASH]
    for j in range(states.shape[0]):
        u = states[j, K.S_UNITS]
        if u != 0.0:
            equity += u * marks[j]
    return equity


@nb.njit(cache=True)
def _close(
    acct: np.ndarray,
    states: np.ndarray,
    trades: np.ndarray,
    fills: np.ndarray,
    j: int,
    bar: int,
    price: float,
    reason: float,
    params: np.ndarray,
) -> None:
    """Close symbol ``j``'s whole position at ``price`` (slippage applied here) through the shared
    cash; a liquidation also cancels its pending order."""
    st = states[j]
    units = st[K.S_UNITS]
    side = 1.0 if units > 0.0 else -1.0
    st[K.S_CASH] = acct[A_CASH]
    paid = price * (1.0 - side * params[K.P_SLIP])
    K.fill(st, trades, j, bar, -units, paid, params[K.P_COMM], reason)
    _log_fill(acct, fills, bar, j, -units, paid, params[K.P_COMM], reason)
    acct[A_CASH] = st[K.S_CASH]
    if reason == K.REASON_LIQUIDATION:
        st[K.S_PENDING] = np.nan


@nb.njit(cache=True)
def _bust(
    acct: np.ndarray,
    states: np.ndarray,
    trades: np.ndarray,
    fills: np.ndarray,
    bar: int,
    marks: np.ndarray,
    params: np.ndarray,
) -> float:
    """Close every position at its mark and stop trading for good; returns the equity left."""
    for j in range(states.shape[0]):
        if states[j, K.S_UNITS] != 0.0:
            _close(acct, states, trades, fills, j, bar, marks[j], K.REASON_LIQUIDATION, params)
    equity: float = acct[A_CASH]
    acct[A_BUST] = 1.0
    acct[A_EQUITY] = equity
    for j in range(states.shape[0]):
        states[j, K.S_BUST] = 1.0
        states[j, K.S_PENDING] = np.nan
    return equity


@nb.njit(cache=True)
def portfolio_bar(
    acct: np.ndarray,
    states: np.ndarray,
    rings: np.ndarray,
    trades: np.ndarray,
    fills: np.ndarray,
    bar: int,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    params: np.ndarray,
) -> float:
    """Advance every symbol of the account by one bar (prices and targets per symbol, NaN prices for
    a symbol without a bar); returns the account's equity at the close. The steps are the
    kernel's (:mod:`raytrader.sim.kernel`), each taken for every symbol before the next. The
    bar's executions are logged to ``fills`` (``FILLS_PER_SYMBOL`` rows per symbol), their number
    to ``acct[A_NFILLS]``."""
    acct[A_NFILLS] = 0.0
    if acct[A_BUST] != 0.0:
        return float(acct[A_EQUITY])
    k = states.shape[0]
    has = np.empty(k, dtype=np.bool_)
    marks = np.empty(k)
    for j in range(k):
        has[j] = not math.isnan(c[j])
        marks[j] = o[j] if has[j] else states[j, K.S_PREV_CLOSE]
    margin = params[K.P_MARGIN] != 0.0
    mm_long, mm_short = params[K.P_MM_LONG], params[K.P_MM_SHORT]

    if margin:  # step 1: a gap through the account's maintenance requirement
        for j in range(k):
            units = states[j, K.S_UNITS]
            if not has[j] or units == 0.0:
                continue
            cash = acct[A_CASH] + _others(states, marks, j, params, True)
            liq = K.liquidation_price(units, cash, mm_long, mm_short)
            if not math.isnan(liq) and (o[j] < liq if units > 0.0 else o[j] > liq):
                _close(acct, states, trades, fills, j, bar, o[j], K.REASON_LIQUIDATION, params)
                if acct[A_CASH] + _others(states, marks, j, params, False) <= 0.0:
                    return _bust(acct, states, trades, fills, bar, marks, params)

    if params[K.P_FILL] == K.FILL_NEXT_OPEN:  # step 2: every order against the equity at the opens
        equity = _equity(acct, states, marks)
        for j in range(k):
            pending = states[j, K.S_PENDING]
            if not has[j] or math.isnan(pending):
                continue
            st = states[j]
            st[K.S_PENDING] = np.nan
            st[K.S_CASH] = acct[A_CASH]
            before = st[K.S_UNITS]
            K.order_to_fraction_of(st, trades, j, bar, o[j], pending, equity, params)
            _log_order_fill(acct, fills, bar, j, before, st[K.S_UNITS], o[j], params)
            acct[A_CASH] = st[K.S_CASH]

    sl, tp = params[K.P_SL], params[K.P_TP]
    if margin or sl > 0.0 or tp > 0.0:  # step 3: exits inside the bar
        for j in range(k):
            units = states[j, K.S_UNITS]
            if not has[j] or units == 0.0:
                continue
            liq = np.nan
            if margin:
                cash = acct[A_CASH] + _others(states, marks, j, params, True)
                liq = K.liquidation_price(units, cash, mm_long, mm_short)
            price, reason = K.bar_exit(units, states[j, K.S_AVG], liq, o[j], h[j], lo[j], sl, tp)
            if not math.isnan(price):
                _close(acct, states, trades, fills, j, bar, price, reason, params)
                left = acct[A_CASH] + _others(states, marks, j, params, False)
                if reason == K.REASON_LIQUIDATION and left <= 0.0:
                    return _bust(acct, states, trades, fills, bar, marks, params)

    if params[K.P_CARRY] != 0.0:  # step 4: borrow fees, and financing shared by the longs
        borrowed = -acct[A_CASH] if acct[A_CASH] < 0.0 else 0.0
        longs = 0.0
        for j in range(k):
            if has[j] and states[j, K.S_UNITS] > 0.0:
                longs += states[j, K.S_UNITS] * c[j]
        for j in range(k):
            units = states[j, K.S_UNITS]
            if not has[j] or units == 0.0:
                continue
            if units < 0.0:
                cost = params[K.P_BORROW] * -units * c[j]
            else:
                cost = params[K.P_FINANCE] * borrowed * (units * c[j] / longs)
            st = states[j]
            acct[A_CASH] -= cost
            st[K.S_TRADE_PNL] -= cost
            st[K.S_TRADE_CARRY] += cost

    for j in range(k):  # step 5: the sizing windows, then the decisions
        if not has[j]:
            continue
        K.observe_close(states[j], rings[j], c[j], params)
        marks[j] = c[j]
    equity = _equity(acct, states, marks)
    for j in range(k):
        if not has[j]:
            continue
        st = states[j]
        st[K.S_CASH] = acct[A_CASH]
        before = st[K.S_UNITS]
        K.decide_weighted(
            st, rings[j], trades, j, bar, c[j], targets[j], params, weights[j], equity
        )
        _log_order_fill(acct, fills, bar, j, before, st[K.S_UNITS], c[j], params)
        acct[A_CASH] = st[K.S_CASH]

    equity = _equity(acct, states, marks)  # step 6: the mark at the closes
    exposed = False
    for j in range(k):
        if states[j, K.S_UNITS] != 0.0:
            exposed = True
    if equity <= 0.0 and exposed:
        return _bust(acct, states, trades, fills, bar, marks, params)
    acct[A_EQUITY] = equity
    for j in range(k):
        st = states[j]
        st[K.S_CASH] = acct[A_CASH]
        st[K.S_EQUITY] = equity
        if st[K.S_UNITS] != 0.0:
            st[K.S_EXPOSED] += 1.0
    return equity


@nb.njit(cache=True)
def simulate_portfolio_rows(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    params: np.ndarray,
    ring_len: int,
    trade_offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole-series path: prices and targets (n_bars x n_symbols). Returns the account's equity
    (n_bars), units held at each close (n_bars x n_symbols), the trade records, the symbols' final
    states and the account."""
    n, k = targets.shape
    equity = np.empty(n)
    positions = np.empty((n, k))
    trades = np.full((trade_offsets[k], K.N_TRADE), np.nan)
    states = np.empty((k, K.N_STATE))
    rings = np.zeros((k, ring_len))
    acct = np.empty(N_ACCOUNT)
    fills = np.empty((FILLS_PER_SYMBOL * k, N_FILL))  # a bar's, overwritten by the next
    init_account(acct, states, params, trade_offsets)
    for i in range(n):
        equity[i] = portfolio_bar(
            acct, states, rings, trades, fills, i, open_[i], high[i], low[i], close[i],
            targets[i], weights, params,
        )  # fmt: skip
        for j in range(k):
            positions[i, j] = states[j, K.S_UNITS]
    for j in range(k):
        K.finalize_open_trade(states[j], trades, j, n - 1, states[j, K.S_PREV_CLOSE])
    return equity, positions, trades, states, acct


# ---- Python entry points ---------------------------------------------------------------------------


def check_weights(weights: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Weights are each in (0, 1] and sum to at most 1 (a tolerance of 1e-9 for decimal input)."""
    w = np.ascontiguousarray(weights, dtype=np.float64).reshape(-1)
    for j, value in enumerate(w):
        if not (0.0 < value <= 1.0):
            name = names[j] if names else f"symbol {j}"
            raise ConfigError(f"the weight of {name} is {float(value)!r}: a weight is in (0, 1]")
    if w.sum() > 1.0 + 1e-9:
        raise ConfigError(
            f"the weights sum to {w.sum():.6g}: a portfolio's weights share one equity and sum "
            "to at most 1"
        )
    return w


def check_bars(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, names: list[str]
) -> None:
    """Per symbol and bar, the four prices are all finite (a bar) or all NaN (no bar at that time)."""
    present = [np.isfinite(a) for a in (open_, high, low, close)]
    absent = [np.isnan(a) for a in (open_, high, low, close)]
    ok = (present[0] & present[1] & present[2] & present[3]) | (
        absent[0] & absent[1] & absent[2] & absent[3]
    )
    if not ok.all():
        i, j = np.argwhere(~ok)[0]
        raise ConfigError(
            f"{names[j]} at bar {i}: open, high, low and close must all be prices or all be "
            f"missing (got {open_[i, j]!r}, {high[i, j]!r}, {low[i, j]!r}, {close[i, j]!r})"
        )


@dataclass(frozen=True)
class PortfolioOutput:
    """Raw kernel output of a whole-series portfolio run: the account's equity at each close
    (n_bars), each symbol's units at each close (n_bars x n_symbols), the trade records (column =
    symbol, ordered by symbol then time) and the bars each symbol held a position."""

    equity: np.ndarray
    positions: np.ndarray
    trades: np.ndarray
    exposed_bars: np.ndarray


def simulate_portfolio(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    config: SimConfig,
    periods_per_year: float,
    weights: np.ndarray | None = None,
    names: list[str] | None = None,
) -> PortfolioOutput:
    """The whole-series path over (n_bars x n_symbols) prices (NaN: the symbol has no bar then) and
    targets (NaN keeps the previous one); ``weights`` default to 1 / n_symbols each."""
    tg = np.ascontiguousarray(targets, dtype=np.float64)
    n, k = tg.shape
    names = names or [f"symbol {j}" for j in range(k)]
    o, h, lo, c = (np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close))
    for a in (o, h, lo, c):
        if a.shape != (n, k):
            raise ConfigError(f"prices of shape {a.shape} do not match targets of shape {(n, k)}")
    check_bars(o, h, lo, c, names)
    check_targets(tg, names=names)
    w = check_weights(np.full(k, 1.0 / k) if weights is None else weights, names)
    if w.shape != (k,):
        raise ConfigError(f"{w.size} weight(s) for {k} symbol(s)")
    params, ring_len = pack_params(config, periods_per_year)
    offsets = K.trade_capacity(np.ascontiguousarray(tg.T))
    equity, positions, trades, states, _ = simulate_portfolio_rows(
        o, h, lo, c, tg, w, params, ring_len, offsets
    )
    if (states[:, K.S_OVERFLOW] != 0).any():  # pragma: no cover - the bound is proven in tests
        raise RaytraderError("internal error: trade buffer overflow in the portfolio kernel")
    used = np.zeros(len(trades), dtype=bool)
    for j in range(k):
        used[offsets[j] : int(states[j, K.S_TSLOT])] = True
    return PortfolioOutput(equity, positions, trades[used], states[:, K.S_EXPOSED].copy())


class PortfolioSimulator:
    """One bar at a time over one account of several symbols (paper trading): ``step`` takes the
    bar's prices per symbol (NaN for a symbol without a bar) and the targets decided at its close;
    with the default ``next_open`` fill they execute at the next ``step``'s open. It calls the
    kernel the whole-series path calls, so both give the same trades and equity."""

    def __init__(
        self,
        config: SimConfig,
        periods_per_year: float,
        weights: np.ndarray,
        names: list[str] | None = None,
        trade_capacity: int = 64,
    ) -> None:
        k = int(np.asarray(weights).size)
        self.names = names or [f"symbol {j}" for j in range(k)]
        self.weights = check_weights(weights, self.names)
        self.config = config
        self.params, ring_len = pack_params(config, periods_per_year)
        self._cap = max(4, trade_capacity)
        self.states = np.empty((k, K.N_STATE))
        self.rings = np.zeros((k, ring_len))
        self.trades_buf = np.full((k * self._cap, K.N_TRADE), np.nan)
        self.account = np.empty(N_ACCOUNT)
        self._fills = np.empty((FILLS_PER_SYMBOL * k, N_FILL))
        init_account(self.account, self.states, self.params, np.arange(k + 1) * self._cap)
        self.bar = 0

    def step(
        self,
        open_: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        targets: np.ndarray,
    ) -> float:
        """Advance the account by one bar; returns its equity at this bar's close."""
        k = len(self.weights)
        o, h, lo, c, t = (
            np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=np.float64), (k,)))
            for x in (open_, high, low, close, targets)
        )
        row = (1, k)
        check_bars(o.reshape(row), h.reshape(row), lo.reshape(row), c.reshape(row), self.names)
        check_targets(t.reshape(1, -1), index=pd.Index([f"bar {self.bar}"]), names=self.names)
        # a bar writes at most three records per symbol: a margin call at the open or a fill that
        # closes a trade, an exit inside the bar, and the account's liquidation at the close
        if (self.states[:, K.S_TEND] - self.states[:, K.S_TSLOT] < 4).any():
            self.trades_buf, self._cap = grow_trade_slots(self.states, self.trades_buf, self._cap)
        equity = portfolio_bar(
            self.account, self.states, self.rings, self.trades_buf, self._fills, self.bar, o, h,
            lo, c, t, self.weights, self.params,
        )  # fmt: skip
        self.bar += 1
        return float(equity)

    def flatten(self) -> None:
        """Order every symbol flat, as targets of 0 decided at the last close would (the kill
        switch). With ``next_open`` fills they fill at the next open; with ``close`` fills, pass
        targets of 0 to the next :meth:`step`."""
        if self.config.fill != "next_open":
            return
        for st in self.states:
            st[K.S_DESIRED] = 0.0
            st[K.S_PENDING] = 0.0 if st[K.S_UNITS] != 0.0 else np.nan

    @property
    def fills(self) -> np.ndarray:
        """The executions of the last bar stepped (``F_*`` columns), in the order they happened."""
        return self._fills[: int(self.account[A_NFILLS])].copy()

    @property
    def units(self) -> np.ndarray:
        return self.states[:, K.S_UNITS].copy()

    @property
    def cash(self) -> float:
        return float(self.account[A_CASH])

    @property
    def equity(self) -> float:
        return float(self.account[A_EQUITY])

    @property
    def bust(self) -> bool:
        return bool(self.account[A_BUST])

    def trades(self, include_open: bool = True) -> np.ndarray:
        """Trade records so far, ordered by symbol then time (each open trade last, if asked,
        valued at its symbol's last close)."""
        last_close = self.states[:, K.S_PREV_CLOSE]
        return trade_slots(
            self.states, self.trades_buf, self._cap, self.bar, last_close, include_open
        )

    def to_bytes(self) -> bytes:
        """The whole state (account, symbols, sizing windows, trade records, bar count), exactly:
        :meth:`from_bytes` continues where this left off, bit for bit."""
        out = io.BytesIO()
        np.savez(
            out, account=self.account, states=self.states, rings=self.rings,
            trades=self.trades_buf, meta=np.array([self._cap, self.bar], dtype=np.int64),
        )  # fmt: skip
        return out.getvalue()

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        config: SimConfig,
        periods_per_year: float,
        weights: np.ndarray,
        names: list[str] | None = None,
    ) -> PortfolioSimulator:
        """A simulator in the state :meth:`to_bytes` saved, for the same config and symbols."""
        sim = cls(config, periods_per_year, weights, names)
        with np.load(io.BytesIO(blob), allow_pickle=False) as saved:
            if saved["states"].shape != sim.states.shape or saved["rings"].shape != sim.rings.shape:
                raise ConfigError(
                    f"a saved state of {saved['states'].shape[0]} symbol(s) and a sizing window "
                    f"of {saved['rings'].shape[1]} does not fit {sim.states.shape[0]} symbol(s) "
                    f"and {sim.rings.shape[1]}"
                )
            sim.account, sim.states, sim.rings = saved["account"], saved["states"], saved["rings"]
            sim.trades_buf = saved["trades"]
            sim._cap, sim.bar = (int(x) for x in saved["meta"])
        return sim
