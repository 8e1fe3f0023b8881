"""Response bodies of the experiment API (they are its OpenAPI schema): one per table, a page
model per listing, and :class:`Problem` for every error.

Times are ISO 8601 in UTC; JSON documents (configs, metrics, parameters) are passed through as the
store keeps them (a metric that was not finite is ``null``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class Problem(BaseModel):
    """An error: what went wrong, naming the parameter, resource or service at fault."""

    detail: str


class Health(BaseModel):
    """``/healthz``: the process answers; ``/readyz``: the store is reachable and migrated."""

    status: str


class Page(_Out, Generic[T]):
    """One page of a listing; ``next_cursor`` fetches the next (``null``: this is the last)."""

    items: list[T]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


# ------------------------------------------------------------------------------------------- runs
class Run(_Out):
    """A training or strategy run: what ran, on which data, with which code, how it ended."""

    id: int
    key: str
    kind: str
    name: str
    status: str
    config: dict[str, Any]
    code_version: str
    data: str | None
    symbol: str | None
    timeframe: str | None
    data_start: dt.datetime | None
    data_end: dt.datetime | None
    feature_service: str | None
    seed: int | None
    mlflow_run_id: str | None
    metrics: dict[str, Any]
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    duration_s: float | None


class RunModel(_Out):
    """What model a run produced: its MLflow run, and the config that trained it."""

    run_id: int
    key: str
    kind: str
    name: str
    status: str
    mlflow_run_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    code_version: str
    finished_at: dt.datetime | None


class Episode(_Out):
    """One finished episode of a run."""

    id: int
    run_id: int
    key: str
    split: str
    iteration: int | None
    length: int
    reward_sum: float
    total_return: float | None
    sharpe: float | None
    max_drawdown: float | None
    trades: int
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    created_at: dt.datetime


class Step(_Out):
    """One (sampled) step of an episode."""

    t: int
    time: dt.datetime | None
    action: float | None
    target: float | None
    position: float | None
    reward: float | None
    equity: float | None
    price: float | None
    features_digest: str | None


# -------------------------------------------------------------------------------------- backtests
class Backtest(_Out):
    """One strategy's backtest on one dataset with its metrics (listings leave out the equity)."""

    id: int
    key: str
    run_id: int | None
    strategy: str
    params: dict[str, Any]
    data: str
    symbol: str
    timeframe: str
    start: dt.datetime
    end: dt.datetime
    bars: int
    sim: dict[str, Any]
    metrics: dict[str, Any]
    code_version: str
    created_at: dt.datetime


class EquityPoint(BaseModel):
    """A point of a backtest's (sampled) equity curve."""

    time: dt.datetime
    equity: float | None


class BacktestDetail(Backtest):
    """A backtest with its equity curve (at most 2000 points, evenly sampled, both ends kept)."""

    equity: list[EquityPoint]


class Trade(_Out):
    """A round trip: entry to exit, P&L net of commission and carry; ``symbol`` in a portfolio
    (null where the backtest or episode trades one symbol)."""

    number: int
    symbol: str | None = None
    side: str
    units: float
    max_units: float
    entry_time: dt.datetime
    exit_time: dt.datetime
    entry_price: float
    exit_price: float
    pnl: float
    trade_return: float
    commission: float
    carry: float
    exit_reason: str


class Operation(_Out):
    """An entry, or an exit with its reason (signal, stop loss, take profit, liquidation, open);
    ``symbol`` as for :class:`Trade`."""

    number: int
    symbol: str | None = None
    time: dt.datetime
    kind: str
    side: str
    units: float
    price: float
    cost: float | None
    reason: str


# ---------------------------------------------------------------------- optimizations, evaluations
class Optimization(_Out):
    """A hyperparameter search: what was searched, how it was scored, which trial won."""

    id: int
    key: str
    name: str
    target: str
    metric: str
    mode: str
    status: str
    config: dict[str, Any]
    best_trial: str | None
    best_score: float | None
    best_params: dict[str, Any] | None
    mlflow_run_id: str | None
    code_version: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    duration_s: float | None


class Trial(_Out):
    """One trial of a search: parameters, score (per walk-forward window too), how it ended."""

    id: int
    key: str
    params: dict[str, Any]
    score: float | None
    window_scores: list[float | None]
    status: str
    early_stopped: bool
    iterations: int
    duration_s: float | None


class Evaluation(_Out):
    """An evaluation: candidates against baselines on one or more datasets, and its verdict."""

    id: int
    key: str
    name: str
    kind: str
    status: str
    config: dict[str, Any]
    summary: dict[str, Any]
    code_version: str
    created_at: dt.datetime


class EvaluationRow(_Out):
    """One candidate's (or baseline's, or oracle's) metrics on one dataset."""

    id: int
    dataset: str
    candidate: str
    role: str
    metrics: dict[str, Any]


# ------------------------------------------------------------------------------------------ pages
class RunPage(Page[Run]):
    """A page of runs."""


class EpisodePage(Page[Episode]):
    """A page of a run's episodes."""


class StepPage(Page[Step]):
    """A page of an episode's steps."""


class BacktestPage(Page[Backtest]):
    """A page of backtests."""


class TradePage(Page[Trade]):
    """A page of trades."""


class OperationPage(Page[Operation]):
    """A page of operations."""


class OptimizationPage(Page[Optimization]):
    """A page of searches."""


class TrialPage(Page[Trial]):
    """A page of a search's trials."""


class EvaluationPage(Page[Evaluation]):
    """A page of evaluations."""


class EvaluationRowPage(Page[EvaluationRow]):
    """A page of an evaluation's rows."""


# ---------------------------------------------------------------------------------- paper trading
class PaperSession(_Out):
    """A paper-trading session: its status (``running``, ``stopped``, ``halting``, ``halted``,
    ``finished``) with the reason, and where its account stands."""

    id: int
    name: str
    status: str
    reason: str | None
    config: dict[str, Any]
    periods_per_year: float | None
    start_time: dt.datetime | None
    last_bar_time: dt.datetime | None
    steps: int
    equity: float | None
    peak_equity: float | None
    code_version: str
    created_at: dt.datetime
    updated_at: dt.datetime


class PaperPosition(_Out):
    """A symbol's position at a close, marked at that close (its last, without a bar then)."""

    symbol: str
    units: float
    price: float
    value: float


class PaperSessionDetail(PaperSession):
    """A session with every symbol's position at its last step."""

    positions: list[PaperPosition]


class PaperStep(_Out):
    """The account at one bar's close."""

    number: int
    time: dt.datetime
    equity: float
    cash: float
    drawdown: float
    gross_exposure: float
    lag_s: float


class PaperDecision(_Out):
    """A symbol's decision at a close; ``target`` null: none, ``reason`` says why (the position
    was held). ``explanation``: a meta ensemble's reasons."""

    number: int
    symbol: str
    target: float | None
    action: str
    reason: str | None
    model: str | None
    model_version: str | None
    explanation: dict[str, Any] | None
    feature_time: dt.datetime | None
    latency_ms: float


class PaperFill(_Out):
    """An execution: ``reason`` signal (an order), stop_loss, take_profit or liquidation."""

    number: int
    seq: int
    symbol: str
    units: float
    price: float
    commission: float
    reason: str


class PaperSessionPage(Page[PaperSession]):
    """A page of paper sessions."""


class PaperStepPage(Page[PaperStep]):
    """A page of a session's steps."""


class PaperDecisionPage(Page[PaperDecision]):
    """A page of a session's decisions."""


class PaperFillPage(Page[PaperFill]):
    """A page of a session's fills."""
