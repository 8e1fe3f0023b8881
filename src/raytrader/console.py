"""What the CLI prints for a person: one Rich console, number formatting and the metrics tables.

Every metrics table says which market calendar annualized it and how many bars make a year, because
a Sharpe ratio or an annual return means nothing without them (the same bars annualized as crypto,
365 days, and as equity, 252 days, differ by a factor of about 1.2 in Sharpe).
"""

from __future__ import annotations

import json
from typing import Any


def console() -> Any:
    from rich.console import Console

    return Console()


def fmt(v: Any) -> str:
    """A table cell: integral floats without decimals, other floats with four, None as ``-``."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


def annualization(calendar: str, periods_per_year: float) -> str:
    """``annualized as equity: 252 bars a year``."""
    return f"annualized as {calendar}: {fmt(float(periods_per_year))} bars a year"


def print_metrics(title: str, summary: dict[str, Any]) -> None:
    """One backtest's summary as a two-column table, its annualization in the caption."""
    from rich.table import Table

    caption = None
    if "calendar" in summary and "periods_per_year" in summary:
        caption = annualization(summary["calendar"], summary["periods_per_year"])
    t = Table(title=title, caption=caption, show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in summary.items():
        t.add_row(k, fmt(v) if not isinstance(v, dict) else json.dumps(v))
    console().print(t)


def print_table(title: str, frame: Any) -> None:
    """A DataFrame as a table: text left, numbers right."""
    from rich.table import Table

    t = Table(title=title)
    for name in frame.columns:
        numeric = frame[name].dtype.kind in "fiu"
        t.add_column(str(name), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False):
        t.add_row(*(fmt(v) for v in row))
    console().print(t)


def print_run(result: Any) -> None:
    """A parallel run's strategies, its ensemble and its execution stats."""
    from rich.table import Table

    t = Table(
        title=f"strategies on {result.symbol} (run {result.run_id})",
        caption=annualization(result.calendar, result.periods_per_year),
    )
    for c in ("strategy", "ok", "total return", "sharpe", "max dd", "trades", "time s", "error"):
        t.add_column(c, justify="right" if c not in ("strategy", "error") else "left")
    entries = list(result.entries) + ([result.ensemble] if result.ensemble else [])
    for e in entries:
        m = e.metrics
        t.add_row(
            e.label,
            "yes" if e.success else "no",
            fmt(m.get("total_return")),
            fmt(m.get("sharpe")),
            fmt(m.get("max_drawdown")),
            fmt(int(m["num_trades"])) if "num_trades" in m else "-",
            f"{e.execution_time:.3f}",
            (e.error or "").splitlines()[0] if e.error else "",
        )
    con = console()
    con.print(t)
    s = result.stats
    con.print(
        f"wall {s.wall_time:.2f} s, task time {s.task_time:.2f} s, workers {s.workers}, "
        f"parallel efficiency {s.parallel_efficiency:.0%}, {s.successes} ok / {s.failures} failed"
    )
