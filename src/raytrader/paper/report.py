"""A paper session read back from its ledger, and checked against a backtest.

:func:`session_report` rebuilds the session's bars from the ledger and runs the portfolio backtest
of the **session's own decisions** on them (:func:`raytrader.sim.portfolio.simulate_portfolio`,
the whole-series path): its equity must equal the ledger's, bar for bar, or the report says by how
much it does not. The result is a :class:`~raytrader.backtest.portfolio.PortfolioResult`, so the
session gets a backtest's metrics, per-symbol table and report files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from raytrader.backtest.portfolio import PortfolioResult, align
from raytrader.data.bars import Bars
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.db.models import (
    PaperBar,
    PaperDecision,
    PaperFill,
    PaperOrder,
    PaperSession,
    PaperStep,
)
from raytrader.errors import ConfigError
from raytrader.paper.config import PaperConfig
from raytrader.paper.ledger import BAR_FIELDS, Ledger, bar_frame
from raytrader.sim.portfolio import simulate_portfolio


@dataclass(frozen=True)
class SessionReport:
    name: str
    status: str
    reason: str | None
    result: PortfolioResult | None
    #: the ledger's equity at each step
    paper_equity: pd.Series
    #: max |paper - backtest of its decisions| over the steps (0.0: equal bit for bit)
    max_difference: float
    decisions: pd.DataFrame
    fills: pd.DataFrame
    steps: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"session": self.name, "status": self.status, "reason": self.reason}
        out["steps"] = len(self.steps)
        if self.result is not None:
            out.update(self.result.summary())
            out["equals_backtest"] = self.max_difference == 0.0
            out["max_difference"] = self.max_difference
        d = self.decisions
        if len(d):
            out["decisions"] = {str(k): int(v) for k, v in d["action"].value_counts().items()}
            missing = d[d["target"].isna()]
            out["no_decision"] = {
                str(k): int(v) for k, v in missing["reason"].value_counts().items()
            }
            latency = self.steps["decision_ms"]
            out["decision_latency_ms"] = {
                "p50": float(latency.quantile(0.5)),
                "p95": float(latency.quantile(0.95)),
                "max": float(latency.max()),
            }
        if len(self.steps):
            out["lag_s"] = {
                "p50": float(self.steps["lag_s"].quantile(0.5)),
                "max": float(self.steps["lag_s"].max()),
            }
        if len(self.fills):
            f = self.fills
            out["fills"] = len(f)
            out["commission"] = float(f["commission"].sum())
        return out


def session_report(ledger: Ledger, name: str) -> SessionReport:
    with ledger.store.session() as s:
        row = s.scalars(select(PaperSession).where(PaperSession.name == name)).one_or_none()
        if row is None:
            raise ConfigError(
                f"no paper session named {name!r} (`raytrader paper status` lists them)"
            )
        sid, status, reason, ppy = row.id, row.status, row.reason, row.periods_per_year
        config = PaperConfig.model_validate(row.config)
        steps = _frame(
            s,
            PaperStep,
            sid,
            ["number", "time", "equity", "cash", "drawdown", "gross_exposure", "lag_s"],
        )
        decisions = _frame(
            s, PaperDecision, sid,
            ["number", "symbol", "target", "action", "reason", "model", "model_version", "latency_ms"],
        )  # fmt: skip
        orders = _frame(s, PaperOrder, sid, ["number", "symbol", "target"])
        fills = _frame(
            s, PaperFill, sid, ["number", "seq", "symbol", "units", "price", "commission", "reason"]
        )
        bars = _frame(s, PaperBar, sid, ["symbol", "open_time", *BAR_FIELDS])
    steps = steps.sort_values("number").reset_index(drop=True)
    latency = decisions.groupby("number")["latency_ms"].max() if len(decisions) else pd.Series()
    steps["decision_ms"] = steps["number"].map(latency).fillna(0.0)
    paper = pd.Series(steps["equity"].to_numpy(), index=pd.DatetimeIndex(steps["time"], tz="UTC"))
    if not len(steps) or ppy is None:
        return SessionReport(name, status, reason, None, paper, 0.0, decisions, fills, steps)
    result = _replay(config, ppy, bars, steps, decisions, orders)
    diff = float(np.max(np.abs(result.equity.to_numpy() - steps["equity"].to_numpy())))
    return SessionReport(name, status, reason, result, paper, diff, decisions, fills, steps)


def _frame(s: Any, model: Any, sid: int, columns: list[str]) -> pd.DataFrame:
    rows = s.execute(
        select(*(getattr(model, c) for c in columns)).where(model.session_id == sid)
    ).all()
    return pd.DataFrame(rows, columns=columns)


def _replay(
    config: PaperConfig,
    ppy: float,
    bars: pd.DataFrame,
    steps: pd.DataFrame,
    decisions: pd.DataFrame,
    orders: pd.DataFrame,
) -> PortfolioResult:
    """The whole-series backtest of the session's targets on the session's bars over its steps.

    The targets are the decisions' (none: NaN, keep), overridden where an order was placed."""
    timeframe = Timeframe.parse(config.timeframe)
    calendar = next((c for c in Calendar if timeframe.periods_per_year(c) == ppy), Calendar.EQUITY)
    universe = []
    for symbol in config.names:
        mine = bars[bars["symbol"] == symbol].rename(columns={"open_time": "timestamp"})
        frame = bar_frame(mine.sort_values("timestamp"))
        universe.append(
            Bars.from_frame(frame, symbol=symbol, timeframe=timeframe, calendar=calendar)
        )
    index, prices = align(universe)
    times = pd.DatetimeIndex(pd.to_datetime(steps["time"], utc=True)).as_unit("ns")
    rows = index.get_indexer(times)
    if (rows < 0).any():
        raise ConfigError(f"paper session {config.session!r}: a step has no bar in the ledger")
    at = {f: prices[f][rows] for f in prices}
    number_row = {int(n): i for i, n in enumerate(steps["number"])}
    col = {s: j for j, s in enumerate(config.names)}
    targets = np.full((len(rows), len(config.names)), np.nan)
    for number, symbol, target in decisions[["number", "symbol", "target"]].to_numpy():
        if target is not None and not pd.isna(target):
            targets[number_row[int(number)], col[str(symbol)]] = float(target)
    # where an order was placed, the desired position it set (the same order; it also covers the
    # kill switch's flatten)
    for number, symbol, target in orders[["number", "symbol", "target"]].to_numpy():
        targets[number_row[int(number)], col[str(symbol)]] = float(target)
    output = simulate_portfolio(
        at["open"], at["high"], at["low"], at["close"], targets, config.sim, ppy,
        np.asarray(config.weights), config.names,
    )  # fmt: skip
    return PortfolioResult(
        universe=universe, index=times, strategy=f"paper:{config.session}",
        params=config.decisions.model_dump(mode="json"), config=config.sim,
        weights=np.asarray(config.weights), targets=targets, output=output,
    )  # fmt: skip
