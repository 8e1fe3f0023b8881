"""The experiment store's tables (SQLAlchemy 2.x declarative models).

Every row that a command writes has a natural key, so that writing it again (a resumed run, a
re-run backtest) updates or skips instead of duplicating:

==================  =================================  ==========================================
table               key                                written by
==================  =================================  ==========================================
``runs``            ``key`` (the caller's run key)     ``train rl|supervised``, ``run-strategies``
``episodes``        ``(run_id, key)``                  ``train rl`` (one per finished episode)
``steps``           ``(episode_id, t)``                ``train rl`` (sampled, :class:`StepSampling`)
``backtests``       ``key`` (content hash)             ``backtest``, ``run-strategies``
``trades``          ``(owner, number)``                backtests and episodes: round trips
``operations``      ``(owner, number)``                backtests and episodes: entries and exits
``optimizations``   ``key``                            ``tune``
``trials``          ``(optimization_id, key)``         ``tune``
``evaluations``     ``key``                            ``meta evaluate``
``evaluation_rows`` ``(evaluation_id, dataset,         ``meta evaluate``: one per candidate and
                    candidate)``                       dataset, metrics as a document
==================  =================================  ==========================================

A trade or an operation belongs to exactly one owner, a backtest or an episode (a check
constraint). Every time is aware UTC (:class:`~raytrader.db.types.UTCDateTime`). Indexes serve the
API's queries: newest-first listings by ``(created_at, id)``, filters by kind and status, an
episode's steps by ``t``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from raytrader.db.types import Document, UTCDateTime, utcnow

#: constraint names Alembic can find again on every database (SQLite's batch mode needs them)
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: the statuses of a run, an optimization and an evaluation
STATUSES = ("running", "finished", "failed")
#: an operation's kind: an entry, or an exit with the kernel's reason
OPERATION_KINDS = ("entry", "signal", "stop_loss", "take_profit", "liquidation", "open")

# SQLite's INTEGER PRIMARY KEY is its rowid (autoincrementing); PostgreSQL gets BIGINT identity
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _status_check() -> CheckConstraint:
    values = ", ".join(f"'{s}'" for s in STATUSES)
    return CheckConstraint(f"status IN ({values})", name="status")


class Run(Base):
    """A training or strategy run: what ran, on which data, with which code, and how it ended."""

    __tablename__ = "runs"
    __table_args__ = (
        _status_check(),
        Index(None, "created_at", "id"),
        Index(None, "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))  # rl | supervised | rules | meta
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(Document, default=dict)
    code_version: Mapped[str] = mapped_column(String(80))
    data: Mapped[str | None] = mapped_column(String(400))
    symbol: Mapped[str | None] = mapped_column(String(80))
    timeframe: Mapped[str | None] = mapped_column(String(20))
    data_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    data_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    feature_service: Mapped[str | None] = mapped_column(String(120))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(Document, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Episode(Base):
    """One finished episode of a run (RL training or evaluation)."""

    __tablename__ = "episodes"
    __table_args__ = (UniqueConstraint("run_id", "key"), Index(None, "run_id", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    split: Mapped[str] = mapped_column(String(20), default="train")
    iteration: Mapped[int | None] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)
    reward_sum: Mapped[float] = mapped_column(Float)
    total_return: Mapped[float | None] = mapped_column(Float)
    sharpe: Mapped[float | None] = mapped_column(Float)
    max_drawdown: Mapped[float | None] = mapped_column(Float)
    trades: Mapped[int] = mapped_column(Integer, default=0)
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Step(Base):
    """One (sampled) step of an episode: what the agent did and what the account became."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("episode_id", "t"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    t: Mapped[int] = mapped_column(Integer)
    time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    action: Mapped[float | None] = mapped_column(Float)
    target: Mapped[float | None] = mapped_column(Float)
    position: Mapped[float | None] = mapped_column(Float)
    reward: Mapped[float | None] = mapped_column(Float)
    equity: Mapped[float | None] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    features_digest: Mapped[str | None] = mapped_column(String(64))


class Backtest(Base):
    """One strategy's backtest on one dataset, with its metrics and a sampled equity curve."""

    __tablename__ = "backtests"
    __table_args__ = (Index(None, "created_at", "id"), Index(None, "strategy", "created_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    strategy: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(Document, default=dict)
    data: Mapped[str] = mapped_column(String(400))
    symbol: Mapped[str] = mapped_column(String(80))
    timeframe: Mapped[str] = mapped_column(String(20))
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    bars: Mapped[int] = mapped_column(Integer)
    sim: Mapped[dict[str, Any]] = mapped_column(Document)
    metrics: Mapped[dict[str, Any]] = mapped_column(Document)
    #: ``[[iso time, equity], ...]``, at most :data:`raytrader.db.store.EQUITY_POINTS` points
    equity: Mapped[list[Any]] = mapped_column(Document, default=list)
    code_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class _OwnedRow:
    """A row that belongs to exactly one backtest or one episode, numbered within its owner."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            CheckConstraint("(backtest_id IS NULL) <> (episode_id IS NULL)", name="one_owner"),
            UniqueConstraint("backtest_id", "number"),
            UniqueConstraint("episode_id", "number"),
        )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    backtest_id: Mapped[int | None] = mapped_column(ForeignKey("backtests.id", ondelete="CASCADE"))
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    #: a portfolio's symbol; NULL where the owner trades one symbol (its own ``symbol``)
    symbol: Mapped[str | None] = mapped_column(String(80))


class Trade(_OwnedRow, Base):
    """A round trip as the kernel records it (entry to exit, P&L net of commission and carry)."""

    __tablename__ = "trades"

    side: Mapped[str] = mapped_column(String(8))
    units: Mapped[float] = mapped_column(Float)
    max_units: Mapped[float] = mapped_column(Float)
    entry_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    exit_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    entry_price: Mapped[float] = mapped_column(Float)
    exit_price: Mapped[float] = mapped_column(Float)
    pnl: Mapped[float] = mapped_column(Float)
    trade_return: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)
    carry: Mapped[float] = mapped_column(Float)
    exit_reason: Mapped[str] = mapped_column(String(20))


class Operation(_OwnedRow, Base):
    """An entry or an exit (signal, stop loss, take profit, liquidation, still open at the end)."""

    __tablename__ = "operations"

    time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(8))
    units: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(200))


class Optimization(Base):
    """A hyperparameter search: what was searched, how it was scored, which trial won."""

    __tablename__ = "optimizations"
    __table_args__ = (_status_check(), Index(None, "created_at", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(40))
    metric: Mapped[str] = mapped_column(String(80))
    mode: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(20), default="running")
    config: Mapped[dict[str, Any]] = mapped_column(Document, default=dict)
    best_trial: Mapped[str | None] = mapped_column(String(100))
    best_score: Mapped[float | None] = mapped_column(Float)
    best_params: Mapped[dict[str, Any] | None] = mapped_column(Document)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Trial(Base):
    """One trial of a search: its parameters, its score per walk-forward window, how it ended."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("optimization_id", "key"),
        Index(None, "optimization_id", "score"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    optimization_id: Mapped[int] = mapped_column(ForeignKey("optimizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(Document)
    score: Mapped[float | None] = mapped_column(Float)
    window_scores: Mapped[list[Any]] = mapped_column(Document, default=list)
    status: Mapped[str] = mapped_column(String(20))
    early_stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    iterations: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Evaluation(Base):
    """An evaluation run (candidates against baselines on one or more datasets)."""

    __tablename__ = "evaluations"
    __table_args__ = (_status_check(), Index(None, "created_at", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="finished")
    config: Mapped[dict[str, Any]] = mapped_column(Document, default=dict)
    #: what the evaluation concluded (e.g. the claim rule's verdict per candidate)
    summary: Mapped[dict[str, Any]] = mapped_column(Document, default=dict)
    code_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvaluationRow(Base):
    """One candidate's (or baseline's) metrics on one dataset of an evaluation."""

    __tablename__ = "evaluation_rows"
    __table_args__ = (UniqueConstraint("evaluation_id", "dataset", "candidate"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(200))
    candidate: Mapped[str] = mapped_column(String(200))
    #: candidate | baseline | oracle
    role: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any]] = mapped_column(Document)


# ---- paper trading: the ledger (raytrader.paper) --------------------------------------------------
#: a paper session's statuses: ``running`` (or stopped cleanly, to run again), ``halting`` (the
#: kill switch fired: flattening), ``halted`` (flat, for good), ``finished`` (its end was reached)
PAPER_STATUSES = ("running", "stopped", "halting", "halted", "finished")


class PaperSession(Base):
    """A paper-trading session: its config, where it stands, and the simulator's exact state (so a
    restarted trader continues bit for bit)."""

    __tablename__ = "paper_sessions"
    __table_args__ = (
        CheckConstraint(f"status IN {PAPER_STATUSES!r}", name="status"),
        Index(None, "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(Document)
    status: Mapped[str] = mapped_column(String(20), default="running")
    #: why it halted or stopped (the kill switch's rule and value, an operator's stop)
    reason: Mapped[str | None] = mapped_column(Text)
    periods_per_year: Mapped[float | None] = mapped_column(Float)
    #: the first bar time every symbol has (the session trades from there)
    start_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_bar_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    equity: Mapped[float | None] = mapped_column(Float)
    peak_equity: Mapped[float | None] = mapped_column(Float)
    #: equity at the last close of the previous UTC day (the daily loss limit's base)
    day_start_equity: Mapped[float | None] = mapped_column(Float)
    #: :meth:`raytrader.sim.portfolio.PortfolioSimulator.to_bytes`
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    code_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class _SessionRow:
    """A row of one session's ledger."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)

    @declared_attr
    def session_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey("paper_sessions.id", ondelete="CASCADE"))


class PaperOffset(Base):
    """The next Kafka offset a session reads from one partition, written with each step (so a
    restarted trader neither skips nor repeats a bar)."""

    __tablename__ = "paper_offsets"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("paper_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class PaperBar(_SessionRow, Base):
    """A bar the session consumed (its input; the strategy decisions' history)."""

    __tablename__ = "paper_bars"
    __table_args__ = (UniqueConstraint("session_id", "symbol", "open_time"),)

    symbol: Mapped[str] = mapped_column(String(80))
    open_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)


class PaperStep(_SessionRow, Base):
    """The account at one bar's close."""

    __tablename__ = "paper_steps"
    __table_args__ = (UniqueConstraint("session_id", "number"),)

    number: Mapped[int] = mapped_column(Integer)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    equity: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    drawdown: Mapped[float] = mapped_column(Float)
    #: sum of |units x close| over the positions, as a fraction of equity
    gross_exposure: Mapped[float] = mapped_column(Float)
    #: seconds from the bar's close time to this step's commit (the lag behind the market)
    lag_s: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PaperDecision(_SessionRow, Base):
    """A symbol's decision at a bar's close, or why there was none (the position is held)."""

    __tablename__ = "paper_decisions"
    __table_args__ = (UniqueConstraint("session_id", "number", "symbol"),)

    number: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(80))
    #: null: no decision (``reason`` says why; the kernel keeps the previous target)
    target: Mapped[float | None] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(80))
    explanation: Mapped[dict[str, Any] | None] = mapped_column(Document)
    feature_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    latency_ms: Mapped[float] = mapped_column(Float)


class PaperOrder(_SessionRow, Base):
    """A change of a symbol's desired position (the kernel places an order only then)."""

    __tablename__ = "paper_orders"
    __table_args__ = (UniqueConstraint("session_id", "number", "symbol"),)

    number: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(80))
    previous: Mapped[float] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    #: the fraction of equity it sizes to (after weight, sizing and the margin cap); null while
    #: a sizing window fills
    fraction: Mapped[float | None] = mapped_column(Float)


class PaperFill(_SessionRow, Base):
    """An execution: an order at the open (or close), a stop, a take-profit, a liquidation."""

    __tablename__ = "paper_fills"
    __table_args__ = (UniqueConstraint("session_id", "number", "seq"),)

    number: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(80))
    units: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(20))


class PaperPosition(_SessionRow, Base):
    """A symbol's position at a bar's close (every symbol, every step)."""

    __tablename__ = "paper_positions"
    __table_args__ = (UniqueConstraint("session_id", "number", "symbol"),)

    number: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(80))
    units: Mapped[float] = mapped_column(Float)
    #: the close it is marked at (the symbol's last, when it had no bar at this time)
    price: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
