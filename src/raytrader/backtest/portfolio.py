"""Portfolio backtests: one strategy on several symbols sharing one account.

Each symbol's targets come from the strategy run on that symbol's own bars (its indicators never
see another symbol or a gap the alignment made); the bars are aligned on the union of their
timestamps over the period they all cover, a symbol without a bar at a time waits (see
:mod:`raytrader.sim.portfolio`), and the account's equity is measured on that union with the
calendar of the symbol that trades most often (crypto before fx before equity).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from raytrader.backtest.engine import json_float, strategy_targets, summarize
from raytrader.backtest.metrics import column_metrics, compute_metrics, equity_returns
from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.sim import SimConfig, trades_frame
from raytrader.sim import kernel as K
from raytrader.sim.portfolio import PortfolioOutput, check_weights, simulate_portfolio
from raytrader.strategies.base import Strategy

PRICES = ("open", "high", "low", "close")


def align(universe: list[Bars]) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    """The union of the symbols' timestamps over the period every one of them covers, and each
    price as an (n_bars x n_symbols) array, NaN where a symbol has no bar."""
    if not universe:
        raise ConfigError("a portfolio needs at least one symbol")
    symbols = [b.symbol for b in universe]
    seen = {s for s in symbols if symbols.count(s) > 1}
    if seen:
        raise ConfigError(f"symbol(s) {sorted(seen)} appear more than once in the portfolio")
    timeframes = {b.timeframe.name for b in universe}
    if len(timeframes) > 1:
        names = ", ".join(f"{b.symbol} {b.timeframe}" for b in universe)
        raise ConfigError(f"a portfolio trades one timeframe; got {names}")
    start = max(b.index[0] for b in universe)
    end = min(b.index[-1] for b in universe)
    if start > end:
        spans = ", ".join(
            f"{b.symbol} {b.index[0]:%Y-%m-%d}..{b.index[-1]:%Y-%m-%d}" for b in universe
        )
        raise ConfigError(f"the symbols share no period: {spans}")
    index = universe[0].index
    for b in universe[1:]:
        index = index.union(b.index)
    index = index[(index >= start) & (index <= end)]
    prices = {
        name: np.column_stack([b.frame[name].reindex(index).to_numpy(np.float64) for b in universe])
        for name in PRICES
    }
    return index, prices


class PortfolioResult:
    """A portfolio backtest: the account's metrics, each symbol's share, and pandas views (equity,
    positions, targets, trades) built on first access."""

    def __init__(
        self,
        *,
        universe: list[Bars],
        index: pd.DatetimeIndex,
        strategy: str,
        params: dict[str, Any],
        config: SimConfig,
        weights: np.ndarray,
        targets: np.ndarray,
        output: PortfolioOutput,
    ) -> None:
        widest = max(universe, key=lambda b: b.periods_per_year)
        self.symbols = [b.symbol for b in universe]
        joined = ",".join(self.symbols)  # the store's symbol column holds 80 characters
        self.symbol = (
            joined if len(joined) <= 80 else f"{self.symbols[0]} and {len(universe) - 1} more"
        )
        self.timeframe = universe[0].timeframe.name
        self.calendar = widest.calendar.value
        self.periods_per_year = widest.periods_per_year
        self.index = index
        self.strategy = strategy
        self.params = params
        self.config = config
        self.weights = weights
        self._targets = targets
        self._output = output
        exposed = np.array([(output.positions != 0.0).any(axis=1).sum()], dtype=np.float64)
        self.metrics = column_metrics(
            compute_metrics(
                output.equity.reshape(1, -1),
                config.initial_cash,
                self.periods_per_year,
                trades=_one_column(output.trades),
                exposed_bars=exposed,
                rows=True,
            )
        )

    @cached_property
    def equity(self) -> pd.Series:
        return pd.Series(self._output.equity, index=self.index, name="equity")

    @cached_property
    def positions(self) -> pd.DataFrame:
        return pd.DataFrame(self._output.positions, index=self.index, columns=self.symbols)

    @cached_property
    def targets(self) -> pd.DataFrame:
        return pd.DataFrame(self._targets, index=self.index, columns=self.symbols)

    @property
    def returns(self) -> pd.Series:
        r = equity_returns(self._output.equity.reshape(-1, 1), self.config.initial_cash)[:, 0]
        return pd.Series(r, index=self.index, name="returns")

    def equity_frame(self) -> pd.DataFrame:
        """The account's equity, each symbol's units (``units:<symbol>``) and target
        (``target:<symbol>``) at each close (the equity CSV)."""
        return pd.concat(
            [self.equity, self.positions.add_prefix("units:"), self.targets.add_prefix("target:")],
            axis=1,
        )

    @cached_property
    def trades(self) -> pd.DataFrame:
        """Every round trip, with its ``symbol``."""
        frame = trades_frame(self._output.trades, self.index, self.symbols)
        return frame.rename(columns={"column": "symbol"})

    @cached_property
    def per_symbol(self) -> pd.DataFrame:
        """Each symbol's weight, trades, P&L (net of its commission and carry), its contribution to
        the portfolio's return (P&L / initial cash), win rate and the share of bars it was held."""
        trades = self.trades
        rows = []
        for j, symbol in enumerate(self.symbols):
            mine = trades[trades["symbol"] == symbol]
            closed = mine[mine["exit_reason"] != "open"]
            rows.append({
                "symbol": symbol,
                "weight": float(self.weights[j]),
                "trades": len(mine),
                "pnl": float(mine["pnl"].sum()),
                "contribution": float(mine["pnl"].sum()) / self.config.initial_cash,
                "win_rate": float((closed["pnl"] > 0).mean()) if len(closed) else float("nan"),
                "exposure": float(self._output.exposed_bars[j]) / len(self.index),
                "commission": float(mine["commission"].sum()),
                "carry": float(mine["carry"].sum()),
            })  # fmt: skip
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: the run's identity, the account's metrics, and ``symbols``: one
        entry per symbol (:attr:`per_symbol`)."""
        out = summarize(self)
        out["symbols"] = [
            {k: json_float(v) if isinstance(v, float) else v for k, v in row.items()}
            for row in self.per_symbol.to_dict("records")
        ]
        return out


def _one_column(trades: np.ndarray) -> np.ndarray:
    """The records as one column's (the account's), for the trade metrics."""
    out = trades.copy()
    out[:, K.T_COL] = 0.0
    return out


def run_portfolio_backtest(
    universe: list[Bars],
    strategy: Strategy,
    config: SimConfig | None = None,
    weights: np.ndarray | list[float] | None = None,
) -> PortfolioResult:
    """Backtest ``strategy`` on every symbol of ``universe`` with one account; ``weights`` (each
    symbol's share of equity, summing to at most 1) default to equal shares."""
    cfg = config or SimConfig()
    symbols = [b.symbol for b in universe]
    w = check_weights(
        np.full(len(universe), 1.0 / len(universe)) if weights is None else np.asarray(weights),
        symbols,
    )
    if w.size != len(universe):
        raise ConfigError(
            f"{w.size} weight(s) for {len(universe)} symbol(s) ({', '.join(symbols)})"
        )
    index, prices = align(universe)
    targets = np.column_stack([
        strategy_targets(strategy, b).reindex(index).to_numpy(np.float64) for b in universe
    ])  # fmt: skip
    widest = max(b.periods_per_year for b in universe)
    output = simulate_portfolio(
        prices["open"], prices["high"], prices["low"], prices["close"], targets, cfg, widest, w,
        symbols,
    )  # fmt: skip
    return PortfolioResult(
        universe=universe,
        index=index,
        strategy=strategy.name,
        params=strategy.params_json,
        config=cfg,
        weights=w,
        targets=targets,
        output=output,
    )
