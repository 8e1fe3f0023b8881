"""Backtests into the experiment store (:mod:`raytrader.db`): what ``raytrader backtest`` and
``run-strategies`` write, with the kernel's trades and operations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from raytrader.backtest.engine import BacktestResult, run_targets
from raytrader.backtest.metrics import column_metrics
from raytrader.backtest.portfolio import PortfolioResult
from raytrader.data.bars import Bars
from raytrader.db.store import BacktestRecord, ExperimentStore
from raytrader.sim import SimConfig, trades_frame


def backtest_record(
    result: BacktestResult | PortfolioResult, data: str, run_key: str | None = None
) -> BacktestRecord:
    """The store's record of ``result``; ``data`` names the dataset as the user gave it."""
    return BacktestRecord(
        strategy=result.strategy,
        params=result.params,
        data=data,
        symbol=result.symbol,
        timeframe=result.timeframe,
        sim=result.config.model_dump(mode="json"),
        metrics={**result.metrics, "periods_per_year": result.periods_per_year},
        equity=result.equity,
        trades=result.trades,
        run_key=run_key,
    )


def targets_record(
    bars: Bars,
    targets: np.ndarray,
    config: SimConfig,
    *,
    strategy: str,
    params: dict[str, Any],
    data: str,
    run_key: str | None = None,
) -> BacktestRecord:
    """The record of a target path run through the kernel again on the driver (the runner's tasks
    return targets and metrics, not trades; the kernel is deterministic, so this is their run)."""
    out, metrics = run_targets(bars, targets, config)
    equity = pd.Series(out.equity_rows[0], index=bars.index, name="equity")
    return BacktestRecord(
        strategy=strategy,
        params=params,
        data=data,
        symbol=bars.symbol,
        timeframe=bars.timeframe.name,
        sim=config.model_dump(mode="json"),
        metrics={
            **column_metrics(metrics, 0),
            "periods_per_year": bars.periods_per_year,
        },
        equity=equity,
        trades=trades_frame(out.trades, bars.index).drop(columns="column"),
        run_key=run_key,
    )


def record_backtest(
    result: BacktestResult | PortfolioResult, data: str, url: str | None = None
) -> int | None:
    """Write ``result`` to the configured store; its backtest id (``None``: no store)."""
    store = ExperimentStore.configured(url)
    if store is None:
        return None
    try:
        return store.record_backtest(backtest_record(result, data))
    finally:
        store.close()
