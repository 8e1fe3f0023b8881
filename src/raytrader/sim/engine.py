"""Python entry points to the kernel: the whole-series path and the one-bar-at-a-time path.

Both call :func:`raytrader.sim.kernel.bar_update`; ``tests/sim/test_engine.py`` runs them on the same
inputs and compares trades and equity exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raytrader.errors import ConfigError, RaytraderError
from raytrader.sim import kernel as K
from raytrader.sim.config import FixedFraction, KellyCapped, SimConfig, VolTarget


def pack_params(config: SimConfig, periods_per_year: float) -> tuple[np.ndarray, int]:
    """Kernel parameter vector and sizing-window length for ``config``."""
    p = np.zeros(K.N_PARAM)
    p[K.P_FILL] = K.FILL_CLOSE if config.fill == "close" else K.FILL_NEXT_OPEN
    p[K.P_COMM] = config.commission
    p[K.P_SLIP] = config.slippage_bps / 10_000.0
    p[K.P_WHOLE] = 1.0 if config.units == "whole" else 0.0
    p[K.P_SL] = config.stop_loss or 0.0
    p[K.P_TP] = config.take_profit or 0.0
    p[K.P_PPY] = periods_per_year
    p[K.P_CASH] = config.initial_cash
    p[K.P_LONG_ONLY] = 0.0 if config.allow_short else 1.0
    margin = config.margin
    p[K.P_FMAX] = np.inf
    if margin is not None:
        p[K.P_MARGIN] = 1.0
        p[K.P_MM_LONG] = margin.maintenance_margin_long
        p[K.P_MM_SHORT] = margin.maintenance_margin_short
        p[K.P_FMAX] = (1.0 + config.commission) / (margin.initial_margin + config.commission)
        p[K.P_BORROW] = margin.borrow_rate / periods_per_year
        p[K.P_FINANCE] = margin.financing_rate / periods_per_year
        p[K.P_CARRY] = 1.0 if margin.borrow_rate > 0.0 or margin.financing_rate > 0.0 else 0.0
    sizing = config.sizing
    ring_len = 1
    if isinstance(sizing, FixedFraction):
        p[K.P_SIZING], p[K.P_S1] = K.SIZING_FIXED, sizing.fraction
    elif isinstance(sizing, VolTarget):
        p[K.P_SIZING], p[K.P_S1], p[K.P_S2] = K.SIZING_VOL, sizing.annual_vol, sizing.max_leverage
        ring_len = sizing.lookback
    elif isinstance(sizing, KellyCapped):
        p[K.P_SIZING], p[K.P_S1], p[K.P_S2] = K.SIZING_KELLY, sizing.kelly_fraction, sizing.cap
        ring_len = sizing.lookback
    else:  # AllIn
        p[K.P_SIZING], p[K.P_S1] = K.SIZING_FIXED, 1.0
    return p, ring_len


def check_targets(
    targets: np.ndarray, index: pd.Index | None = None, names: list[str] | None = None
) -> None:
    """Targets must be NaN (keep previous) or finite within [-1, 1]; names the first bad cell."""
    ok = np.isnan(targets) | ((targets >= -1.0) & (targets <= 1.0))
    if not ok.all():
        bad = ~ok
        i, j = np.argwhere(bad)[0]
        where = index[i] if index is not None else f"bar {i}"
        col = names[j] if names is not None else f"column {j}"
        raise ConfigError(
            f"target position {targets[i, j]!r} at {where} ({col}) is outside [-1, 1]; "
            f"{int(bad.sum())} bad value(s) in all"
        )


def _rows(a: np.ndarray) -> np.ndarray:
    """1-D → (1 x n); (n x k) → (k x n) contiguous: the kernel's column-major layout."""
    a = np.asarray(a, dtype=np.float64)
    return np.ascontiguousarray(a.reshape(1, -1) if a.ndim == 1 else a.T)


@dataclass(frozen=True)
class SimOutput:
    """Raw kernel output of a whole-series run (arrays, no pandas).

    ``equity_rows``/``positions_rows`` are (n_cols x n_bars); ``equity``/``positions`` are the
    (n_bars x n_cols) views of the same memory.
    """

    equity_rows: np.ndarray
    positions_rows: np.ndarray
    trades: np.ndarray  # n_trades x N_TRADE, ordered by column then time
    exposed_bars: np.ndarray  # n_cols

    @property
    def equity(self) -> np.ndarray:
        return self.equity_rows.T

    @property
    def positions(self) -> np.ndarray:
        return self.positions_rows.T


def simulate(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    config: SimConfig,
    periods_per_year: float,
    *,
    positions: bool = True,
) -> SimOutput:
    """Whole-series path: targets (n_bars,) or (n_bars x n_cols) over one price series shared by all
    columns, or one price column per target column."""
    return simulate_rows(
        _rows(open_),
        _rows(high),
        _rows(low),
        _rows(close),
        _rows(targets),
        config,
        periods_per_year,
        positions=positions,
    )


def simulate_rows(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    config: SimConfig,
    periods_per_year: float,
    *,
    positions: bool = True,
) -> SimOutput:
    """As :func:`simulate`, in the kernel's layout: targets (n_cols x n_bars), prices
    (1 or n_cols x n_bars)."""
    tg = np.ascontiguousarray(targets, dtype=np.float64)
    k, n = tg.shape
    if open_.shape[1] != n or open_.shape[0] not in (1, k):
        raise ConfigError(
            f"{k} target column(s) of {n} bars do not match prices of shape {open_.T.shape}"
        )
    check_targets(tg.T)
    params, ring_len = pack_params(config, periods_per_year)
    offsets = K.trade_capacity(tg)
    equity, pos, trades, states = K.simulate_columns(
        np.ascontiguousarray(open_),
        np.ascontiguousarray(high),
        np.ascontiguousarray(low),
        np.ascontiguousarray(close),
        tg,
        params,
        ring_len,
        offsets,
        positions,
    )
    if (states[:, K.S_OVERFLOW] != 0).any():  # pragma: no cover - the bound is proven in tests
        raise RaytraderError("internal error: trade buffer overflow in the simulation kernel")
    used = np.zeros(len(trades), dtype=bool)
    for j in range(k):
        used[offsets[j] : int(states[j, K.S_TSLOT])] = True
    return SimOutput(
        equity_rows=equity,
        positions_rows=pos,
        trades=trades[used],
        exposed_bars=states[:, K.S_EXPOSED],
    )


def trades_frame(
    trades: np.ndarray, index: pd.DatetimeIndex, columns: list[str] | None = None
) -> pd.DataFrame:
    """Trade records as a DataFrame with entry/exit timestamps and readable exit reasons.

    ``pnl`` includes ``commission`` (every fill of the trade) and ``carry`` (borrow fees of a short,
    financing of a leveraged long, while it was open)."""
    t = np.asarray(trades, dtype=np.float64).reshape(-1, K.N_TRADE)
    entry = t[:, K.T_ENTRY_BAR].astype(np.int64)
    exit_ = t[:, K.T_EXIT_BAR].astype(np.int64)
    col = t[:, K.T_COL].astype(np.int64)
    units = t[:, K.T_UNITS]
    return pd.DataFrame(
        {
            "column": np.asarray(columns, dtype=object)[col] if columns else col,
            "entry_time": index[entry],
            "exit_time": index[exit_],
            "entry_bar": entry,
            "exit_bar": exit_,
            "side": np.where(units > 0, "long", "short"),
            "units": units,
            "entry_price": t[:, K.T_ENTRY_PRICE],
            "exit_price": t[:, K.T_EXIT_PRICE],
            "pnl": t[:, K.T_PNL],
            "return": t[:, K.T_RETURN],
            "commission": t[:, K.T_COMMISSION],
            "carry": t[:, K.T_CARRY],
            "exit_reason": np.asarray(K.REASONS, dtype=object)[t[:, K.T_REASON].astype(np.int64)],
            "max_units": t[:, K.T_MAX_UNITS],
        }
    )


def grow_trade_slots(states: np.ndarray, buf: np.ndarray, cap: int) -> tuple[np.ndarray, int]:
    """The one-bar paths' trade buffer (``cap`` slots per column) doubled, each column's records
    and slot pointers moved along; returns the new buffer and capacity."""
    new_cap = cap * 2
    grown = np.full((states.shape[0] * new_cap, K.N_TRADE), np.nan)
    for j in range(states.shape[0]):
        used = int(states[j, K.S_TSLOT]) - j * cap
        grown[j * new_cap : j * new_cap + used] = buf[j * cap : j * cap + used]
        states[j, K.S_TSLOT] = j * new_cap + used
        states[j, K.S_TEND] = (j + 1) * new_cap
    return grown, new_cap


def trade_slots(
    states: np.ndarray,
    buf: np.ndarray,
    cap: int,
    bars: int,
    last_close: np.ndarray,
    include_open: bool,
) -> np.ndarray:
    """The records in a one-bar path's trade buffer after ``bars`` bars, ordered by column then
    time; with ``include_open``, each column's open trade last, valued at ``last_close``."""
    rows = []
    for j in range(states.shape[0]):
        rows.append(buf[j * cap : int(states[j, K.S_TSLOT])])
        if include_open and states[j, K.S_UNITS] != 0.0 and bars > 0:
            tmp_state = states[j].copy()
            tmp = np.full((1, K.N_TRADE), np.nan)
            tmp_state[K.S_TSLOT], tmp_state[K.S_TEND] = 0, 1
            K.finalize_open_trade(tmp_state, tmp, j, bars - 1, last_close[j])
            rows.append(tmp)
    return np.concatenate(rows) if rows else np.empty((0, K.N_TRADE))


class Simulator:
    """One bar at a time over ``n_columns`` independent accounts (paper trading, RL env).

    ``step`` takes this bar's prices and the targets decided at this bar's close; with the default
    ``next_open`` fill the orders execute at the next ``step``'s open.
    """

    def __init__(
        self,
        config: SimConfig,
        periods_per_year: float,
        n_columns: int = 1,
        trade_capacity: int = 64,
    ) -> None:
        self.config = config
        self.n_columns = n_columns
        self.params, ring_len = pack_params(config, periods_per_year)
        self._cap = max(4, trade_capacity)
        self.states = np.empty((n_columns, K.N_STATE))
        self.rings = np.zeros((n_columns, ring_len))
        self.trades_buf = np.full((n_columns * self._cap, K.N_TRADE), np.nan)
        for j in range(n_columns):
            K.init_state(self.states[j], self.params, j * self._cap, (j + 1) * self._cap)
        self.bar = 0
        self._equity = np.empty(n_columns)
        self._last_close = np.full(n_columns, np.nan)

    def _grow(self) -> None:
        self.trades_buf, self._cap = grow_trade_slots(self.states, self.trades_buf, self._cap)

    def step(
        self,
        open_: np.ndarray | float,
        high: np.ndarray | float,
        low: np.ndarray | float,
        close: np.ndarray | float,
        targets: np.ndarray | float,
    ) -> np.ndarray:
        """Advance every column by one bar; returns equity at this bar's close (per column)."""
        k = self.n_columns
        o, h, lo, c, t = (
            np.broadcast_to(np.asarray(x, dtype=np.float64), (k,)).copy()
            for x in (open_, high, low, close, targets)
        )
        self._check(t)
        # each bar writes at most two trade records per column (a margin call at the open or a
        # reversal, then a stop or margin call inside the bar or the close's liquidation)
        free = self.states[:, K.S_TEND] - self.states[:, K.S_TSLOT]
        if (free < 3).any():
            self._grow()
        K.step_columns(
            self.states,
            self.rings,
            self.trades_buf,
            self.bar,
            o,
            h,
            lo,
            c,
            t,
            self.params,
            self._equity,
        )
        self._last_close = c
        self.bar += 1
        return self._equity.copy()

    def forget_trades(self) -> None:
        """Drop the closed-trade records (an open position lives in the state, not in them): a
        caller that reads only equity, such as the meta ensemble's track records, keeps its
        memory bounded however long it runs."""
        for j in range(self.n_columns):
            self.states[j, K.S_TSLOT] = j * self._cap

    def advance(
        self,
        open_: np.ndarray | float,
        high: np.ndarray | float,
        low: np.ndarray | float,
        close: np.ndarray | float,
    ) -> np.ndarray:
        """:meth:`step` with no new decision (NaN targets): fills, stops and the close mark of one
        bar. Follow it with :meth:`decide` to act on that close."""
        return self.step(open_, high, low, close, np.nan)

    def decide(self, targets: np.ndarray | float) -> None:
        """Targets decided at the close of the bar last advanced; they fill at the next bar's open.

        ``advance(bar)`` then ``decide(targets)`` gives the same orders, trades and equity as
        ``step(bar, targets)`` (the RL environment observes the close before it acts). Only in
        ``next_open`` fill mode: a ``close`` fill would have to happen inside the bar.
        """
        if self.config.fill != "next_open":
            raise ConfigError(
                "decide() needs fill='next_open'; with 'close' pass targets to step()"
            )
        if self.bar == 0:
            raise ConfigError("decide() acts on the close of the last bar: advance a bar first")
        t = np.broadcast_to(np.asarray(targets, dtype=np.float64), (self.n_columns,)).copy()
        self._check(t, self.bar - 1)
        K.decide_columns(
            self.states, self.rings, self.trades_buf, self.bar - 1, self._last_close, t, self.params
        )

    def restart(
        self,
        columns: np.ndarray,
        open_: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
    ) -> None:
        """Start the listed columns over (initial cash, no position, empty sizing window, their
        trade records dropped) and advance them by one bar with these prices (one per listed
        column), as the first bar of a new episode; the other columns are untouched. Call it
        after :meth:`advance` for the bar, before :meth:`decide`."""
        cols = np.asarray(columns, dtype=np.int64)
        if cols.size == 0:
            return
        if self.bar == 0:
            raise ConfigError("restart() replaces a bar already advanced: advance one first")
        for j in cols:
            K.init_state(self.states[j], self.params, j * self._cap, (j + 1) * self._cap)
            self.rings[j] = 0.0
        prices = [np.asarray(x, dtype=np.float64).reshape(-1) for x in (open_, high, low, close)]
        nan = np.full(cols.size, np.nan)
        o, h, lo, c = prices
        K.step_selected(
            self.states,
            self.rings,
            self.trades_buf,
            self.bar - 1,
            cols,
            o,
            h,
            lo,
            c,
            nan,
            self.params,
            self._equity,
        )
        self._last_close = self._last_close.copy()
        self._last_close[cols] = prices[3]

    def _check(self, t: np.ndarray, bar: int | None = None) -> None:
        if not (np.isnan(t) | ((t >= -1.0) & (t <= 1.0))).all():  # cheap path: no pandas per bar
            check_targets(
                t.reshape(1, -1), index=pd.Index([f"bar {self.bar if bar is None else bar}"])
            )

    @property
    def units(self) -> np.ndarray:
        return self.states[:, K.S_UNITS].copy()

    @property
    def cash(self) -> np.ndarray:
        return self.states[:, K.S_CASH].copy()

    @property
    def equity(self) -> np.ndarray:
        return self.states[:, K.S_EQUITY].copy()

    def trades(self, include_open: bool = True) -> np.ndarray:
        """Trade records so far, ordered by column then time (the open trade last, if asked)."""
        return trade_slots(
            self.states, self.trades_buf, self._cap, self.bar, self._last_close, include_open
        )
