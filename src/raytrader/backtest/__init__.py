"""Backtest driver, metrics and reports."""

from raytrader.backtest.engine import BacktestResult, run_backtest, run_targets, sweep
from raytrader.backtest.metrics import METRIC_NAMES, compute_metrics

__all__ = [
    "METRIC_NAMES",
    "BacktestResult",
    "compute_metrics",
    "run_backtest",
    "run_targets",
    "sweep",
]
