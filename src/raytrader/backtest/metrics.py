"""Performance metrics with pinned definitions (empyrical's), vectorized over columns.

Returns are simple periodic returns of the equity curve, including the first bar's return against the
initial cash: ``r_0 = E_0 / cash - 1``, ``r_t = E_t / E_{t-1} - 1``. ``ppy`` is the bars' periods per
year (:meth:`raytrader.data.Timeframe.periods_per_year`); the risk-free rate is 0.

=====================  ============================================================================
total_return           E_T / cash - 1
annual_return          (1 + total_return) ** (ppy / n) - 1            (empyrical ``annual_return``)
annual_volatility      std(r, ddof=1) * sqrt(ppy)                      (``annual_volatility``)
sharpe                 mean(r) / std(r, ddof=1) * sqrt(ppy)            (``sharpe_ratio``)
sortino                mean(r) * ppy / (sqrt(mean(min(r, 0)^2)) * sqrt(ppy))   (``sortino_ratio``)
max_drawdown           min over t of E_t / max(cash, E_0..E_t) - 1     (``max_drawdown``, <= 0)
calmar                 annual_return / |max_drawdown|, NaN without a drawdown (``calmar_ratio``)
max_drawdown_duration  longest run of bars below the running peak (peak to recovery, or to the end)
var_95                 5th percentile of r (linear interpolation)      (``value_at_risk``)
cvar_95                mean of the lowest floor((n-1)*0.05)+1 returns   (``conditional_value_at_risk``)
exposure               fraction of bars ending with a non-zero position
num_trades             round trips, including one still open at the end
win_rate               winning closed trades / closed trades
profit_factor          gross profit / gross loss of closed trades (inf without losses)
expectancy             mean P&L per closed trade (currency)
final_equity           E_T, as the account reports it (negative: a debt to the broker)
=====================  ============================================================================
A zero-dispersion return series has volatility 0 and a NaN Sharpe; with no losing bar Sortino is
+inf (as empyrical's), and NaN when the mean is also 0.

**A bust curve.** An account whose equity reaches 0 or below at bar ``b`` (the kernel's bust: with
margin a liquidation through a gap past zero equity, without margin any liquidation) has lost
everything: from ``b`` on its wealth is 0, whatever the curve says later or how negative it is.
Every metric but ``final_equity`` reads that wealth, ``W_t = E_t`` before ``b`` and ``0`` from ``b``
on, so ``total_return`` is -1 (never below), ``annual_return`` -1, ``max_drawdown`` -1, ``calmar``
-1, and the drawdown lasts to the end. The return-based metrics (volatility, Sharpe, Sortino, VaR,
CVaR) are those of the account's life: the returns ``r_0 .. r_b``, the last being -1; the bars after
``b`` have no return (0 / 0) and are left out.
A liquidation that leaves equity above 0 (a margin call) is no bust: the account keeps that equity and
trades on once the strategy's target changes; the flat cash until then has returns of 0 and counts like
any flat period.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from raytrader.sim import kernel as K

_CURVE_METRICS = (
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration",
    "var_95",
    "cvar_95",
    "final_equity",
)
_TRADE_METRICS = ("num_trades", "win_rate", "profit_factor", "expectancy")
METRIC_NAMES = (*_CURVE_METRICS[:-1], "exposure", *_TRADE_METRICS, "final_equity")


def wealth(equity: np.ndarray) -> np.ndarray:
    """The equity matrix (n_bars x n_cols) as the metrics read it: 0 from the first bar at or below 0
    on (a bust account has lost everything; see the module docstring)."""
    eq = np.asarray(equity, dtype=np.float64)
    bust = np.maximum.accumulate(eq <= 0.0, axis=0)
    out: np.ndarray = np.where(bust, 0.0, eq)
    return out


def equity_returns(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Simple returns of an equity matrix (n_bars x n_cols), the first against ``initial_cash``.

    Of the :func:`wealth`: the bar that goes bust returns -1, and the bars after it (0 / 0) return 0
    here, for plots and weights; the metrics leave them out."""
    eq = wealth(equity)
    prev = np.vstack([np.full((1, eq.shape[1]), initial_cash), eq[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(prev > 0.0, eq / prev - 1.0, 0.0)
    return out


def _curve_metrics_py(equity: np.ndarray, cash: float, ppy: float) -> np.ndarray:
    """Per row of ``equity`` (n_cols x n_bars): the values of ``_CURVE_METRICS`` in that order."""
    k, n = equity.shape
    out = np.full((k, len(_CURVE_METRICS)), np.nan)
    sq = math.sqrt(ppy)
    for j in nb.prange(k):
        eq = equity[j]
        r = np.empty(n)
        prev = cash
        peak = cash
        max_dd = 0.0
        run = 0.0
        longest = 0.0
        life = n  # bars with a return: up to and including the bar that goes bust
        w = cash
        for i in range(n):
            if life == n:
                w = 0.0 if eq[i] <= 0.0 else eq[i]
                r[i] = w / prev - 1.0
                prev = w
                if w == 0.0:
                    life = i + 1
            if w > peak:
                peak = w
            dd = w / peak - 1.0
            if dd < max_dd:
                max_dd = dd
            if dd < 0.0:
                run += 1.0
                if run > longest:
                    longest = run
            else:
                run = 0.0
        rl = r[:life]
        total = w / cash - 1.0
        growth = 1.0 + total
        annual = growth ** (ppy / n) - 1.0
        mean = rl.sum() / life
        rmin = rl.min()
        rmax = rl.max()
        std = np.nan
        if life > 1:
            acc = 0.0
            for i in range(life):
                acc += (rl[i] - mean) ** 2
            std = math.sqrt(acc / (life - 1))
            if rmax == rmin:
                std = 0.0
        down = 0.0
        for i in range(life):
            if rl[i] < 0.0:
                down += rl[i] * rl[i]
        down = math.sqrt(down / life) * sq
        o = out[j]
        o[0] = total
        o[1] = annual
        o[2] = std * sq
        o[3] = mean / std * sq if std > 0.0 else np.nan
        if down > 0.0:
            o[4] = mean * ppy / down
        elif mean != 0.0:  # no losing bar: empyrical's division gives +/-inf
            o[4] = math.copysign(np.inf, mean)
        o[5] = annual / abs(max_dd) if max_dd < 0.0 else np.nan
        if math.isinf(o[5]):
            o[5] = np.nan
        o[6] = max_dd
        o[7] = longest
        # the 5% tail needs only a partial order: after partitioning at hi_i, the hi_i smallest
        # returns sit before it (unordered) and the lo_i-th smallest is their maximum
        pos = (life - 1) * 0.05
        lo_i = math.floor(pos)
        hi_i = min(lo_i + 1, life - 1)
        part = np.partition(rl, hi_i)
        if hi_i == lo_i:  # a single return
            o[8] = part[lo_i]
            o[9] = part[0]
        else:
            lo_v = part[:hi_i].max()
            o[8] = lo_v + (part[hi_i] - lo_v) * (pos - lo_i)
            o[9] = part[:hi_i].mean()  # the cut + 1 = hi_i smallest returns
        o[10] = eq[n - 1]
    return out


_CURVE = K.Twins(_curve_metrics_py)


def _curve_metrics(equity: np.ndarray, cash: float, ppy: float) -> np.ndarray:
    out: np.ndarray = _CURVE(equity.shape[0], equity, cash, ppy)
    return out


def compute_metrics(
    equity: np.ndarray,
    initial_cash: float,
    periods_per_year: float,
    *,
    trades: np.ndarray | None = None,
    exposed_bars: np.ndarray | None = None,
    rows: bool = False,
) -> dict[str, np.ndarray]:
    """Every metric in :data:`METRIC_NAMES` per column of ``equity`` (n_bars x n_cols, or n_cols x
    n_bars with ``rows=True``)."""
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim == 1:
        eq = eq.reshape(1, -1)
    elif not rows:
        eq = eq.T
    eq = np.ascontiguousarray(eq)
    k, n = eq.shape
    curve = _curve_metrics(eq, float(initial_cash), float(periods_per_year))
    out = {name: curve[:, i].copy() for i, name in enumerate(_CURVE_METRICS)}
    out["exposure"] = (exposed_bars / n) if exposed_bars is not None else np.full(k, np.nan)
    out.update(trade_metrics(trades, k))
    return out


@nb.njit(cache=True)
def _trade_stats(trades: np.ndarray, k: int) -> np.ndarray:
    """Per column: trades (all), closed trades, wins, gross profit, gross loss, total closed P&L."""
    out = np.zeros((k, 6))
    for t in range(trades.shape[0]):
        j = int(trades[t, K.T_COL])
        out[j, 0] += 1.0
        if trades[t, K.T_REASON] == K.REASON_OPEN:
            continue
        pnl = trades[t, K.T_PNL]
        out[j, 1] += 1.0
        if pnl > 0.0:
            out[j, 2] += 1.0
            out[j, 3] += pnl
        elif pnl < 0.0:
            out[j, 4] -= pnl
        out[j, 5] += pnl
    return out


def trade_metrics(trades: np.ndarray | None, k: int) -> dict[str, np.ndarray]:
    """Trade counts, win rate, profit factor and expectancy per column."""
    t = np.empty((0, K.N_TRADE)) if trades is None else np.ascontiguousarray(trades)
    stats = _trade_stats(t, k)
    num, closed, wins, gross_win, gross_loss, total = stats.T
    with np.errstate(divide="ignore", invalid="ignore"):
        has = closed > 0
        win_rate = np.where(has, wins / closed, np.nan)
        pf = np.where(has, np.where(gross_loss > 0, gross_win / gross_loss, np.inf), np.nan)
        expectancy = np.where(has, total / closed, np.nan)
    return {
        "num_trades": num.copy(),
        "win_rate": win_rate,
        "profit_factor": pf,
        "expectancy": expectancy,
    }


def column_metrics(metrics: dict[str, np.ndarray], j: int = 0) -> dict[str, float]:
    """The metrics of one column as plain floats (JSON-friendly)."""
    return {name: float(metrics[name][j]) for name in METRIC_NAMES}
