"""A paper session's Prometheus metrics (``raytrader paper run --metrics-port``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from raytrader.paper.decisions import Outcome
    from raytrader.paper.ledger import BarWrite
    from raytrader.sim.portfolio import PortfolioSimulator


class PaperMetrics:
    def __init__(self, registry: Any | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.bars = Counter("raytrader_paper_bars_total", "Bar times traded", registry=r)
        self.skipped = Counter(
            "raytrader_paper_messages_skipped_total",
            "Bar messages skipped (invalid, or already processed)",
            ["reason"],
            registry=r,
        )
        self.decisions = Counter(
            "raytrader_paper_decisions_total", "Decisions by action", ["action"], registry=r
        )
        self.no_decision = Counter(
            "raytrader_paper_no_decision_total",
            "Symbols without a decision at a bar (the position was held)",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "raytrader_paper_decision_latency_seconds",
            "Time to a bar's decisions",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.orders = Counter("raytrader_paper_orders_total", "Orders placed", registry=r)
        self.fills = Counter("raytrader_paper_fills_total", "Fills", ["reason"], registry=r)
        self.equity = Gauge(
            "raytrader_paper_equity", "Account equity at the last close", registry=r
        )
        self.drawdown = Gauge(
            "raytrader_paper_drawdown", "Drawdown from the equity's peak (<= 0)", registry=r
        )
        self.halted = Gauge(
            "raytrader_paper_kill_switch",
            "1 once the kill switch fired (halting or halted), else 0",
            registry=r,
        )
        self.lag = Gauge(
            "raytrader_paper_lag_seconds",
            "From the last traded bar's close to its ledger commit (behind the stream)",
            registry=r,
        )

    def observe_step(
        self,
        trader: Any,
        sim: PortfolioSimulator,
        outcomes: Mapping[str, Outcome],
        write: BarWrite,
        close_time: pd.Timestamp,
    ) -> None:
        self.bars.inc()
        for o in outcomes.values():
            self.decisions.labels(action=o.action).inc()
            if o.target is None:
                self.no_decision.labels(reason=_kind(o.reason or "")).inc()
        if outcomes:
            self.latency.observe(max(o.latency_ms for o in outcomes.values()) / 1000.0)
        self.orders.inc(len(write.orders))
        for f in write.fills:
            self.fills.labels(reason=f["reason"]).inc()
        step = write.step or {}
        self.equity.set(step.get("equity", sim.equity))
        self.drawdown.set(step.get("drawdown", 0.0))
        self.halted.set(1.0 if trader.resume.status in ("halting", "halted") else 0.0)
        self.lag.set(step.get("lag_s", 0.0))


def _kind(reason: str) -> str:
    """A reason's kind, a bounded label set."""
    for kind in (
        "stale features",
        "unreachable",
        "answered",
        "look-backs",
        "no decision",
        "halting",
    ):
        if kind in reason:
            return kind.replace(" ", "_").replace("-", "_")
    return "other"


def serve(metrics: PaperMetrics, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's metrics port
    """``/metrics`` on ``port`` in a daemon thread."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=metrics.registry)
