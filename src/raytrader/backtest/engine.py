"""Backtests: a strategy's targets through the simulation kernel, then metrics.

``run_backtest`` runs one strategy on one symbol; ``run_targets`` runs any target matrix (many
strategies, parameter sets or symbols as columns) in one kernel call; ``sweep`` runs a parameter grid.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from raytrader.backtest.metrics import METRIC_NAMES, column_metrics, compute_metrics, equity_returns
from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.sim import SimConfig, trades_frame
from raytrader.sim.engine import SimOutput, simulate_rows
from raytrader.strategies.base import Strategy, StrategyParams, get_strategy, parse_params


class BacktestResult:
    """One column's backtest. Metrics are computed eagerly; pandas views (equity, positions, targets,
    trades) are built on first access."""

    def __init__(
        self,
        *,
        bars: Bars,
        strategy: str,
        params: dict[str, Any],
        config: SimConfig,
        targets: np.ndarray,
        output: SimOutput,
        metrics: dict[str, float],
    ) -> None:
        self.symbol = bars.symbol
        self.timeframe = bars.timeframe.name
        self.calendar = bars.calendar.value
        self.periods_per_year = bars.periods_per_year
        self.index = bars.index
        self.strategy = strategy
        self.params = params
        self.config = config
        self.metrics = metrics
        self._targets = targets
        self._output = output

    @cached_property
    def targets(self) -> pd.Series:
        return pd.Series(self._targets, index=self.index, name="target")

    @cached_property
    def equity(self) -> pd.Series:
        return pd.Series(self._output.equity_rows[0], index=self.index, name="equity")

    @cached_property
    def positions(self) -> pd.Series:
        return pd.Series(self._output.positions_rows[0], index=self.index, name="units")

    @cached_property
    def trades(self) -> pd.DataFrame:
        return trades_frame(self._output.trades, self.index).drop(columns="column")

    @property
    def returns(self) -> pd.Series:
        r = equity_returns(self.equity.to_numpy().reshape(-1, 1), self.config.initial_cash)[:, 0]
        return pd.Series(r, index=self.equity.index, name="returns")

    def equity_frame(self) -> pd.DataFrame:
        """Equity, units held and target at each close (the equity CSV)."""
        return self.equity.to_frame().assign(units=self.positions, target=self.targets)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (metrics plus identity of the run)."""
        return summarize(self)


def summarize(result: Any) -> dict[str, Any]:
    """A backtest's JSON-ready summary: its identity (symbol, timeframe, calendar, strategy,
    period) and its metrics, non-finite ones as null."""
    out: dict[str, Any] = {
        "symbol": result.symbol,
        "timeframe": result.timeframe,
        "calendar": result.calendar,
        "periods_per_year": result.periods_per_year,
        "strategy": result.strategy,
        "params": result.params,
        "start": result.index[0].isoformat(),
        "end": result.index[-1].isoformat(),
        "bars": len(result.index),
        "trades": int(result.metrics["num_trades"]),
    }
    out.update({k: json_float(v) for k, v in result.metrics.items()})
    return out


def json_float(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def strategy_targets(
    strategy: Strategy, bars: Bars, features: pd.DataFrame | None = None
) -> pd.Series:
    """Run a strategy and check its output is one target per bar within [-1, 1]."""
    frame = bars.frame if features is None else bars.frame.join(features)
    targets = strategy.target_positions(frame)
    if (
        not isinstance(targets, pd.Series)
        or len(targets) != len(bars)
        or not (targets.index is frame.index or targets.index.equals(bars.index))
    ):
        raise ConfigError(
            f"strategy {strategy.name!r} must return a Series aligned with the {len(bars)} input bars"
        )
    return targets if targets.dtype == np.float64 else targets.astype(np.float64)


def run_targets(
    bars: Bars,
    targets: np.ndarray | pd.Series | pd.DataFrame,
    config: SimConfig | None = None,
    *,
    positions: bool = True,
    rows: bool = False,
) -> tuple[SimOutput, dict[str, np.ndarray]]:
    """Simulate one or many target columns on ``bars``; returns (kernel output, metrics per column).

    ``targets`` is (n_bars,) or (n_bars x n_cols), or (n_cols x n_bars) with ``rows=True``.
    """
    cfg = config or SimConfig()
    tg = np.asarray(targets, dtype=np.float64)
    o, h, lo, c = (bars.column(x).reshape(1, -1) for x in ("open", "high", "low", "close"))
    if tg.ndim == 1:
        tg = tg.reshape(1, -1)
    elif not rows:
        tg = tg.T
    out = simulate_rows(o, h, lo, c, tg, cfg, bars.periods_per_year, positions=positions)
    metrics = compute_metrics(
        out.equity_rows,
        cfg.initial_cash,
        bars.periods_per_year,
        trades=out.trades,
        exposed_bars=out.exposed_bars,
        rows=True,
    )
    return out, metrics


def run_backtest(
    bars: Bars,
    strategy: Strategy | pd.Series,
    config: SimConfig | None = None,
    *,
    name: str | None = None,
) -> BacktestResult:
    """Backtest a strategy (or a ready target Series) on ``bars``."""
    cfg = config or SimConfig()
    if isinstance(strategy, Strategy):
        targets = strategy_targets(strategy, bars)
        sname, params = strategy.name, strategy.params_json
    else:
        if len(strategy) != len(bars) or not strategy.index.equals(bars.index):
            raise ConfigError(
                f"target series {name or strategy.name!r} is not aligned with the bars: index it like the "
                f"{len(bars)} bars of {bars.symbol} ({bars.index[0]} .. {bars.index[-1]})"
            )
        targets = strategy.astype(np.float64)
        sname, params = name or str(strategy.name or "targets"), {}
    tg = targets.to_numpy(dtype=np.float64)
    out, metrics = run_targets(bars, tg, cfg)
    return BacktestResult(
        bars=bars,
        strategy=sname,
        params=params,
        config=cfg,
        targets=tg,
        output=out,
        metrics=column_metrics(metrics, 0),
    )


def parse_grid(specs: Mapping[str, str | Sequence[Any]]) -> dict[str, list[Any]]:
    """``{"fast": "5:50"}`` → ``{"fast": [5, ..., 50]}``; ``a:b:step`` and ``x,y,z`` also work."""
    out: dict[str, list[Any]] = {}
    for key, spec in specs.items():
        if not isinstance(spec, str):
            out[key] = list(spec)
            continue
        try:
            if ":" in spec:
                parts = [int(p) for p in spec.split(":")]
                if len(parts) not in (2, 3):
                    raise ValueError
                lo, hi = parts[0], parts[1]
                step = parts[2] if len(parts) == 3 else 1
                if step <= 0 or hi < lo:
                    raise ValueError
                out[key] = list(range(lo, hi + 1, step))
            else:
                out[key] = [_number(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"grid {key}={spec!r}: use start:stop[:step] with integers (inclusive) or a list a,b,c"
            ) from None
    return out


def _number(v: str) -> int | float | str:
    v = v.strip()
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            continue
    return v


@dataclass(frozen=True)
class GridPlan:
    """The valid parameter sets of a grid, in grid order, and how many combinations were invalid."""

    strategy: str
    keys: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    param_sets: tuple[StrategyParams, ...]
    skipped: int

    def chunk(self, start: int, stop: int) -> GridPlan:
        return GridPlan(
            self.strategy, self.keys, self.rows[start:stop], self.param_sets[start:stop], 0
        )


def plan_grid(
    strategy: str, grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None
) -> GridPlan:
    """Validate a grid: unknown or doubly given parameters are errors; combinations the parameter
    model rejects (e.g. ``fast >= slow`` for ``ma_cross``) are skipped and counted."""
    cls = get_strategy(strategy)
    keys = list(grid)
    known = set(cls.Params.model_fields)
    unknown = sorted((set(keys) | set(fixed or {})) - known)
    if unknown:
        raise ConfigError(
            f"strategy {strategy}: unknown parameter(s) {unknown}; it takes {sorted(known)}"
        )
    overlap = sorted(set(keys) & set(fixed or {}))
    if overlap:
        raise ConfigError(
            f"parameter(s) {overlap} are both swept (--grid) and fixed (--param); pick one"
        )
    param_sets, rows, skipped = [], [], 0
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True)) | dict(fixed or {})
        try:
            p = parse_params(strategy, cls.Params, values)
        except ConfigError:
            skipped += 1
            continue
        param_sets.append(p)
        rows.append(dict(zip(keys, combo, strict=True)))
    if not param_sets:
        raise ConfigError(f"grid for {strategy!r} has no valid parameter combination")
    return GridPlan(strategy, tuple(keys), tuple(rows), tuple(param_sets), skipped)


def run_grid(bars: Bars, plan: GridPlan, config: SimConfig | None = None) -> pd.DataFrame:
    """Backtest every parameter set of ``plan`` in one kernel call; unsorted table of metrics."""
    cls = get_strategy(plan.strategy)
    targets = cls.target_rows(bars.frame, plan.param_sets)
    _, metrics = run_targets(bars, targets, config, positions=False, rows=True)
    table = pd.DataFrame(list(plan.rows), columns=list(plan.keys))
    for name in METRIC_NAMES:
        table[name] = metrics[name]
    return table


def sort_table(table: pd.DataFrame, sort_by: str, skipped: int) -> pd.DataFrame:
    out = table.sort_values(sort_by, ascending=False, na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["skipped"] = skipped
    return out


def check_sort_key(sort_by: str) -> None:
    if sort_by not in METRIC_NAMES:
        raise ConfigError(f"cannot sort by {sort_by!r}; metrics: {', '.join(METRIC_NAMES)}")


def sweep(
    bars: Bars,
    strategy: str,
    grid: Mapping[str, Sequence[Any]],
    config: SimConfig | None = None,
    *,
    fixed: Mapping[str, Any] | None = None,
    sort_by: str = "sharpe",
) -> pd.DataFrame:
    """Backtest every valid combination of ``grid`` in one kernel call; table sorted by ``sort_by``
    (descending), invalid combinations counted in ``table.attrs["skipped"]``.

    :meth:`raytrader.strategies.runner.StrategyRunner.sweep` spreads the same work over Ray tasks.
    """
    check_sort_key(sort_by)
    plan = plan_grid(strategy, grid, fixed)
    return sort_table(run_grid(bars, plan, config), sort_by, plan.skipped)
