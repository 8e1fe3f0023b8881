"""Backtest reports: equity + drawdown and returns histogram PNGs, trades CSV, metrics JSON.

Written under a run folder; files are written to temporary names and renamed, so a failed report
never leaves half-written files behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from raytrader.backtest.engine import BacktestResult
from raytrader.backtest.portfolio import PortfolioResult


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_equity_csv(result: BacktestResult | PortfolioResult, path: Path) -> None:
    """``result.equity_frame()`` as CSV with ISO-8601 timestamps, written whole or not at all."""
    frame = result.equity_frame()
    frame.index = frame.index.map(lambda t: t.isoformat())
    _atomic_write(path, frame.to_csv(index_label="timestamp").encode())


def write_report(
    result: BacktestResult | PortfolioResult, directory: str | Path
) -> dict[str, Path]:
    """Write the report files for ``result`` into ``directory``; returns name → path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    eq = result.equity
    peak = np.maximum.accumulate(np.concatenate(([result.config.initial_cash], eq.to_numpy())))[1:]
    dd = eq.to_numpy() / peak - 1.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 1))
    ax1.plot(eq.index, eq.to_numpy(), lw=1.0, label="equity")
    ax1.set_title(f"{result.strategy} on {result.symbol} ({result.timeframe})")
    ax1.set_ylabel("equity")
    ax1.grid(alpha=0.3)
    ax2.fill_between(eq.index, dd * 100.0, 0.0, color="tab:red", alpha=0.5)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    paths["equity_png"] = out / "equity_drawdown.png"
    tmp = paths["equity_png"].with_name("equity_drawdown.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(paths["equity_png"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(result.returns.to_numpy() * 100.0, bins=60, color="tab:blue", alpha=0.8)
    ax.set_xlabel("bar return %")
    ax.set_ylabel("bars")
    ax.set_title("returns histogram")
    fig.tight_layout()
    paths["returns_png"] = out / "returns_hist.png"
    tmp = paths["returns_png"].with_name("returns_hist.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(paths["returns_png"])
    plt.close(fig)

    trades = result.trades.copy()
    for c in ("entry_time", "exit_time"):
        trades[c] = trades[c].map(lambda t: t.isoformat())
    paths["trades_csv"] = out / "trades.csv"
    _atomic_write(paths["trades_csv"], trades.to_csv(index=False).encode())

    paths["equity_csv"] = out / "equity.csv"
    write_equity_csv(result, paths["equity_csv"])

    meta: dict[str, Any] = {**result.summary(), "sim_config": result.config.model_dump(mode="json")}
    paths["metrics_json"] = out / "metrics.json"
    _atomic_write(paths["metrics_json"], json.dumps(meta, indent=2, sort_keys=True).encode())
    return paths
