"""Where a paper session's decisions come from: a rule strategy run in the trader, or the decision
service. Either way a symbol gets an :class:`Outcome` per bar: a target, or none with the reason
(the account then keeps the position: the kernel's NaN rule, never a silent flat)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from raytrader.paper.config import ServiceDecisions, StrategyDecisions


@dataclass(frozen=True)
class Outcome:
    """A symbol's decision at a bar's close; ``target`` None: none (``reason`` says why)."""

    target: float | None
    action: str
    reason: str | None = None
    model: str | None = None
    model_version: str | None = None
    explanation: dict[str, Any] | None = None
    feature_time: pd.Timestamp | None = None
    latency_ms: float = 0.0


def action_of(target: float | None) -> str:
    if target is None:
        return "keep"
    return "buy" if target > 0 else "sell" if target < 0 else "hold"


def no_decision(reason: str, latency_ms: float = 0.0) -> Outcome:
    return Outcome(target=None, action="keep", reason=reason, latency_ms=latency_ms)


class DecisionSource(Protocol):
    def decide(
        self,
        close_time: pd.Timestamp,
        history: Mapping[str, pd.DataFrame],
        positions: Mapping[str, float],
    ) -> dict[str, Outcome]:
        """Decisions at ``close_time`` for the symbols of ``history`` (each symbol's bars up to and
        including this one); ``positions``: each one's position as a fraction of equity."""
        ...


class StrategySource:
    """A registered rule strategy on each symbol's own bars so far: its target for the last bar,
    the value a backtest computes for that bar on the whole series (a causal strategy's value at a
    bar depends only on the bars up to it)."""

    def __init__(self, config: StrategyDecisions) -> None:
        from raytrader.strategies.base import make_strategy

        self.strategy = make_strategy(config.name, config.params)
        self.model = f"strategy:{config.name}"

    def decide(
        self,
        close_time: pd.Timestamp,
        history: Mapping[str, pd.DataFrame],
        positions: Mapping[str, float],
    ) -> dict[str, Outcome]:
        out = {}
        for symbol, frame in history.items():
            t0 = time.perf_counter()
            target = float(self.strategy.target_positions(frame).iloc[-1])
            latency = (time.perf_counter() - t0) * 1000.0
            if np.isnan(target):
                out[symbol] = Outcome(
                    None, "keep", "the strategy has no target yet (its look-backs are filling)",
                    self.model, None, None, None, latency,
                )  # fmt: skip
            else:
                out[symbol] = Outcome(
                    target, action_of(target), None, self.model, None, None, None, latency
                )
        return out


class ServiceSource:
    """The decision service: one ``POST /v1/decisions`` for the bar's symbols with their positions,
    asked again (every ``poll_s``) until each decision's features are the bar's (``feature_time``
    at the bar's close) or ``feature_wait_s`` has passed. A symbol still without fresh features,
    a service that does not answer, or a 4xx/5xx: no decision, with the reason."""

    def __init__(self, config: ServiceDecisions, token: str | None = None) -> None:
        import httpx

        from raytrader import settings

        self.config = config
        self.url = settings.serve_url(config.url).rstrip("/")
        token = token if token is not None else settings.client_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=config.timeout_s)

    def close(self) -> None:
        self.client.close()

    def decide(
        self,
        close_time: pd.Timestamp,
        history: Mapping[str, pd.DataFrame],
        positions: Mapping[str, float],
    ) -> dict[str, Outcome]:
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.config.feature_wait_s
        wanted = list(history)
        fresh: dict[str, Outcome] = {}
        problem = "no answer yet"
        while True:
            missing = [s for s in wanted if s not in fresh]
            answer, problem = self._ask(missing, positions, problem)
            for symbol, decision in answer.items():
                feature_time = pd.Timestamp(decision["feature_time"]).tz_convert("UTC")
                if feature_time >= close_time:
                    fresh[symbol] = self._outcome(decision, feature_time, t0)
                else:
                    problem = (
                        f"stale features: the online row is for {feature_time.isoformat()}, "
                        f"the bar closed at {close_time.isoformat()}"
                    )
            if len(fresh) == len(wanted) or time.monotonic() >= deadline:
                break
            time.sleep(self.config.poll_s)
        latency = (time.perf_counter() - t0) * 1000.0
        return {s: fresh.get(s) or no_decision(problem, latency) for s in wanted}

    def _ask(
        self, symbols: Sequence[str], positions: Mapping[str, float], problem: str
    ) -> tuple[dict[str, dict[str, Any]], str]:
        import httpx

        body = {
            "symbols": [
                {"symbol": s, "position": min(max(positions.get(s, 0.0), -1.0), 1.0)}
                for s in symbols
            ]
        }
        try:
            response = self.client.post("/v1/decisions", json=body)
        except httpx.HTTPError as exc:
            return {}, f"decision service unreachable at {self.url}: {exc}"
        if response.status_code != 200:
            detail = response.text[:300]
            return {}, f"decision service answered {response.status_code}: {detail}"
        payload = response.json()
        return {d["symbol"]: d for d in payload["decisions"]}, problem

    def _outcome(self, d: dict[str, Any], feature_time: pd.Timestamp, t0: float) -> Outcome:
        target = d.get("target")
        reason = None
        if target is None:
            reason = "the model has no decision for this row (every member returned none)"
        return Outcome(
            target=None if target is None else float(target),
            action=str(d["action"]),
            reason=reason,
            model=d["model"]["name"],
            model_version=str(d["model"]["version"]),
            explanation=d.get("explanation"),
            feature_time=feature_time,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
        )


def decision_source(config: StrategyDecisions | ServiceDecisions) -> Any:
    """The source a session's ``decisions`` name."""
    if isinstance(config, StrategyDecisions):
        return StrategySource(config)
    return ServiceSource(config)
