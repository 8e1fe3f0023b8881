"""Writing to the experiment store: transactional, idempotent, batched.

Every write is one transaction and keyed (:mod:`raytrader.db.models`): a run resumed under the same
key keeps its id and skips the episodes and steps it already wrote; a backtest written again under
the same content key replaces the earlier one whole (its trades and operations with it), so the
store never holds half of a write or two copies of one.

Steps are sampled before they are written (:class:`StepSampling`): every ``every``-th step, then at
most ``max_per_episode`` of those, evenly spaced, the last step always kept — a 10-million-step
training run does not write 10 million rows unless asked to.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import hashlib
import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raytrader import settings
from raytrader.config import StrictConfig
from raytrader.data.bars import Bars
from raytrader.db import engine as db_engine
from raytrader.db.models import (
    Backtest,
    Episode,
    Evaluation,
    EvaluationRow,
    Operation,
    Optimization,
    Run,
    Step,
    Trade,
    Trial,
)
from raytrader.db.types import UTC, utcnow
from raytrader.errors import ExperimentStoreError

log = logging.getLogger(__name__)

#: the most points of a backtest's equity curve kept in its row
EQUITY_POINTS = 2000
#: rows per INSERT statement of a batch
BATCH_ROWS = 5000
CODE_VERSION_ENV = "RAYTRADER_CODE_VERSION"


class StepSampling(StrictConfig):
    """Which steps of an episode are written: every ``every``-th, then at most ``max_per_episode``
    of those evenly spaced, the first and the last always kept (``max_per_episode=1``: the last
    only; ``0``: none)."""

    every: int = Field(default=1, ge=1)
    max_per_episode: int = Field(default=5000, ge=0)

    def select(self, n: int) -> np.ndarray:
        """The indices (into ``0..n-1``) to keep."""
        if n == 0 or self.max_per_episode == 0:
            return np.zeros(0, dtype=np.int64)
        keep = np.arange(0, n, self.every, dtype=np.int64)
        if keep[-1] != n - 1:
            keep = np.append(keep, n - 1)
        if self.max_per_episode == 1:
            return keep[-1:]
        if len(keep) > self.max_per_episode:
            pick = np.linspace(0, len(keep) - 1, self.max_per_episode).round().astype(np.int64)
            keep = keep[np.unique(pick)]
        return keep


@functools.cache
def code_version() -> str:
    """``RAYTRADER_CODE_VERSION`` (the image sets it), else the package version plus the source
    checkout's commit (``0.1.0+g1a2b3c4``, ``.dirty`` with uncommitted changes)."""
    from raytrader import __version__

    explicit = os.environ.get(CODE_VERSION_ENV)
    if explicit:
        return explicit
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return __version__
    try:
        sha = subprocess.run(  # noqa: S603 - fixed argument list
            ["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"],  # noqa: S607 - git on PATH
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(  # noqa: S603 - fixed argument list
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"


def content_key(*parts: Any) -> str:
    """A stable key for a write: SHA-256 of the parts' canonical JSON."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def finite(value: Any) -> float | None:
    """A float for a JSON document or a column: NaN and infinities become ``None``."""
    if value is None:
        return None
    f = float(value)
    return f if np.isfinite(f) else None


def finite_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float | np.floating | int | np.integer) and not isinstance(v, bool):
            out[k] = finite(v) if isinstance(v, float | np.floating) else int(v)
        elif isinstance(v, Mapping):
            out[k] = finite_dict(v)
        else:
            out[k] = v
    return out


def _aware(t: Any) -> dt.datetime:
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise ExperimentStoreError(f"naive timestamp {ts}: the store takes aware UTC times")
    return ts.tz_convert(UTC).to_pydatetime()


# --------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class RunSpec:
    """What a run is, known when it starts."""

    key: str
    kind: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    data: str | None = None
    symbol: str | None = None
    timeframe: str | None = None
    data_start: dt.datetime | None = None
    data_end: dt.datetime | None = None
    feature_service: str | None = None
    seed: int | None = None
    mlflow_run_id: str | None = None

    @classmethod
    def for_bars(cls, bars: Bars, *, key: str, kind: str, what: str, **fields: Any) -> RunSpec:
        """A run on ``bars``: named ``<what> on <symbol> <timeframe>``, with their symbol,
        timeframe and first and last bar times."""
        tf = bars.timeframe.name
        return cls(
            key=key, kind=kind, name=f"{what} on {bars.symbol} {tf}", symbol=bars.symbol,
            timeframe=tf, data_start=bars.index[0].to_pydatetime(),
            data_end=bars.index[-1].to_pydatetime(), **fields,
        )  # fmt: skip


@dataclass(frozen=True)
class EpisodeRecord:
    """A finished episode; ``steps`` holds per-step columns (``t`` and any of ``time``, ``action``,
    ``target``, ``position``, ``reward``, ``equity``, ``price``, ``features_digest``)."""

    key: str
    length: int
    reward_sum: float
    split: str = "train"
    iteration: int | None = None
    total_return: float | None = None
    sharpe: float | None = None
    max_drawdown: float | None = None
    trades: int = 0
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    steps: pd.DataFrame | None = None
    trade_rows: pd.DataFrame | None = None


@dataclass(frozen=True)
class BacktestRecord:
    """One backtest: identity, its sim config and metrics, the equity curve and the kernel's trades
    (``trades_frame``'s columns)."""

    strategy: str
    params: Mapping[str, Any]
    data: str
    symbol: str
    timeframe: str
    sim: Mapping[str, Any]
    metrics: Mapping[str, Any]
    equity: pd.Series
    trades: pd.DataFrame
    run_key: str | None = None

    @property
    def key(self) -> str:
        e = self.equity
        return content_key(
            "backtest", self.strategy, dict(self.params), self.data, self.symbol, self.timeframe,
            dict(self.sim), str(e.index[0]), str(e.index[-1]), len(e), self.run_key,
        )  # fmt: skip


@dataclass(frozen=True)
class TrialRecord:
    key: str
    params: Mapping[str, Any]
    score: float | None
    status: str
    window_scores: Sequence[float | None] = ()
    early_stopped: bool = False
    iterations: int = 0
    duration_s: float | None = None


@dataclass(frozen=True)
class OptimizationRecord:
    key: str
    name: str
    target: str
    metric: str
    mode: str
    config: Mapping[str, Any]
    trials: Sequence[TrialRecord]
    status: str = "finished"
    best_trial: str | None = None
    best_score: float | None = None
    best_params: Mapping[str, Any] | None = None
    mlflow_run_id: str | None = None
    created_at: dt.datetime | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class EvaluationRecord:
    key: str
    name: str
    kind: str
    config: Mapping[str, Any]
    #: (dataset, candidate, role, metrics)
    rows: Sequence[tuple[str, str, str, Mapping[str, Any]]]
    summary: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- store
class ExperimentStore:
    """The experiment store at one database (checked to be at the code's schema revision)."""

    def __init__(self, engine: Engine, *, check: bool = True, copy_steps: bool = True) -> None:
        self.engine = engine
        #: PostgreSQL: steps go in by COPY (``False``: batched INSERTs, the benchmark's baseline)
        self.copy_steps = copy_steps
        if check:
            db_engine.check_current(engine)

    @classmethod
    def open(cls, url: str | None = None) -> ExperimentStore:
        """The configured store (``RAYTRADER_DB_URL``, see :func:`raytrader.settings.db_url`).

        In local mode an un-migrated or older store is migrated first (a first backtest on a
        fresh machine just works); in cluster mode the chart's hook Job migrates, and a store
        that is not at the code's revision is an error."""
        engine = db_engine.make_engine(url)
        if settings.mode() == "local" and db_engine.current_revision(engine) != (
            db_engine.head_revision()
        ):
            db_engine.upgrade(engine)
        return cls(engine)

    @classmethod
    def configured(cls, url: str | None = None) -> ExperimentStore | None:
        """:meth:`open`, or ``None`` (logged) in cluster mode when no store is configured: a
        RayJob of a release without the experiment store still trains, and says so."""
        if (
            url is None
            and settings.mode() == "cluster"
            and not settings.lookup(settings.DB_URL_ENV)
        ):
            log.warning("not recorded: %s is not set (no experiment store)", settings.DB_URL_ENV)
            return None
        return cls.open(url)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with db_engine._reachable(self.engine), Session(self.engine) as s, s.begin():
            yield s

    def _insert(self, model: Any) -> Any:
        """A dialect's INSERT that can skip rows conflicting with a unique key."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    # -- runs and episodes
    def start_run(self, spec: RunSpec) -> int:
        """The run's id: a new row, or (same key) the existing run, set running again."""
        values = {
            "kind": spec.kind, "name": spec.name, "config": dict(spec.config),
            "code_version": code_version(), "data": spec.data, "symbol": spec.symbol,
            "timeframe": spec.timeframe, "data_start": spec.data_start,
            "data_end": spec.data_end, "feature_service": spec.feature_service,
            "seed": spec.seed, "mlflow_run_id": spec.mlflow_run_id,
        }  # fmt: skip
        with self.session() as s:
            found = s.scalar(select(Run.id).where(Run.key == spec.key))
            if found is not None:
                s.execute(
                    update(Run)
                    .where(Run.id == found)
                    .values(status="running", error=None, finished_at=None, **values)
                )
                return int(found)
            run = Run(key=spec.key, status="running", metrics={}, **values)
            s.add(run)
            s.flush()
            return int(run.id)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str = "finished",
        metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
        mlflow_run_id: str | None = None,
    ) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise ExperimentStoreError(f"no run with id {run_id}")
            now = utcnow()
            run.status = status
            run.metrics = finite_dict({**(run.metrics or {}), **(metrics or {})})
            run.error = error
            run.finished_at = now
            run.duration_s = (now - run.created_at).total_seconds()
            if mlflow_run_id:
                run.mlflow_run_id = mlflow_run_id

    @contextlib.contextmanager
    def run(self, spec: RunSpec) -> Iterator[int]:
        """``start_run`` … ``finish_run``: failed (with the error) if the block raises."""
        run_id = self.start_run(spec)
        try:
            yield run_id
        except BaseException as exc:
            self.finish_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        self.finish_run(run_id)

    def record_episode(
        self, run_id: int, episode: EpisodeRecord, sampling: StepSampling | None = None
    ) -> int | None:
        """Write a finished episode with its sampled steps and its trades; ``None`` when the run
        already has an episode with this key (a resumed run)."""
        sampling = sampling or StepSampling()
        with self.session() as s:
            if s.scalar(
                select(Episode.id).where(Episode.run_id == run_id, Episode.key == episode.key)
            ):
                return None
            row = Episode(
                run_id=run_id, key=episode.key, split=episode.split, iteration=episode.iteration,
                length=int(episode.length), reward_sum=float(episode.reward_sum),
                total_return=finite(episode.total_return), sharpe=finite(episode.sharpe),
                max_drawdown=finite(episode.max_drawdown), trades=int(episode.trades),
                start_time=episode.start_time, end_time=episode.end_time,
            )  # fmt: skip
            s.add(row)
            s.flush()
            if episode.steps is not None and len(episode.steps):
                frame = episode.steps.iloc[sampling.select(len(episode.steps))]
                self._write_steps(s, int(row.id), frame)
            if episode.trade_rows is not None and len(episode.trade_rows):
                self._write_trades(s, {"episode_id": int(row.id)}, episode.trade_rows)
            return int(row.id)

    def write_steps(self, episode_id: int, steps: pd.DataFrame) -> int:
        """Append steps to an episode (rows whose ``t`` it has are skipped); the rows submitted."""
        with self.session() as s:
            return self._write_steps(s, episode_id, steps)

    def _write_steps(self, s: Session, episode_id: int, steps: pd.DataFrame) -> int:
        if "t" not in steps:
            raise ExperimentStoreError("steps need a 't' column (the step index)")
        known = ("time", "action", "target", "position", "reward", "equity", "price")
        unknown = set(steps.columns) - {"t", "features_digest", *known}
        if unknown:
            raise ExperimentStoreError(f"unknown step column(s): {', '.join(sorted(unknown))}")
        cols: dict[str, list[Any]] = {"t": [int(v) for v in steps["t"]]}
        for name in known[1:]:
            if name in steps:
                arr = steps[name].to_numpy(dtype=np.float64)
                cols[name] = [float(v) if np.isfinite(v) else None for v in arr]
        if "time" in steps:
            cols["time"] = [_aware(t) for t in steps["time"]]
        if "features_digest" in steps:
            cols["features_digest"] = [
                None if v is None else str(v) for v in steps["features_digest"]
            ]
        n = len(cols["t"])
        if self.copy_steps and self.engine.dialect.name == "postgresql":
            _copy_steps(s, episode_id, cols)
            return n
        stmt = self._insert(Step).on_conflict_do_nothing(index_elements=["episode_id", "t"])
        for lo in range(0, n, BATCH_ROWS):
            hi = min(n, lo + BATCH_ROWS)
            batch = [
                {"episode_id": episode_id, **{k: v[i] for k, v in cols.items()}}
                for i in range(lo, hi)
            ]
            s.execute(stmt, batch)
        return n

    # -- backtests
    def record_backtest(self, record: BacktestRecord) -> int:
        """Write (or replace, same key) a backtest with its trades and operations."""
        run_id = None
        with self.session() as s:
            if record.run_key is not None:
                run_id = s.scalar(select(Run.id).where(Run.key == record.run_key))
                if run_id is None:
                    raise ExperimentStoreError(f"no run with key {record.run_key!r}")
            key = record.key
            s.execute(delete(Backtest).where(Backtest.key == key))
            e = record.equity
            pick = np.unique(np.linspace(0, len(e) - 1, min(len(e), EQUITY_POINTS)).round())
            points = [
                [e.index[int(i)].isoformat(), finite(e.iloc[int(i)])] for i in pick.astype(int)
            ]
            row = Backtest(
                key=key, run_id=run_id, strategy=record.strategy, params=dict(record.params),
                data=record.data, symbol=record.symbol, timeframe=record.timeframe,
                start=_aware(e.index[0]), end=_aware(e.index[-1]), bars=len(e),
                sim=dict(record.sim), metrics=finite_dict(record.metrics), equity=points,
                code_version=code_version(),
            )  # fmt: skip
            s.add(row)
            s.flush()
            self._write_trades(s, {"backtest_id": int(row.id)}, record.trades)
            return int(row.id)

    def _write_trades(self, s: Session, owner: dict[str, int], trades: pd.DataFrame) -> None:
        """The kernel's trades (``trades_frame`` columns) and the operations they imply: an entry
        at the trade's average entry price and an exit with its reason."""
        if trades.empty:
            return
        rows = []
        ops = []
        for i, r in enumerate(trades.to_dict("records")):
            side = str(r["side"])
            symbol = str(r["symbol"]) if "symbol" in r else None
            rows.append({
                **owner, "number": i, "symbol": symbol, "side": side, "units": float(r["units"]),
                "max_units": float(r["max_units"]), "entry_time": _aware(r["entry_time"]),
                "exit_time": _aware(r["exit_time"]), "entry_price": float(r["entry_price"]),
                "exit_price": float(r["exit_price"]), "pnl": float(r["pnl"]),
                "trade_return": float(r["return"]),
                "commission": float(r["commission"]), "carry": float(r["carry"]),
                "exit_reason": str(r["exit_reason"]),
            })  # fmt: skip
            reason = str(r["exit_reason"])
            ops.append({
                **owner, "number": 2 * i, "symbol": symbol, "time": _aware(r["entry_time"]),
                "kind": "entry",
                "side": side, "units": float(r["max_units"]), "price": float(r["entry_price"]),
                "cost": None, "reason": f"open {side} (trade {i})",
            })  # fmt: skip
            ops.append({
                **owner, "number": 2 * i + 1, "symbol": symbol, "time": _aware(r["exit_time"]),
                "kind": reason,
                "side": side, "units": abs(float(r["units"])), "price": float(r["exit_price"]),
                "cost": float(r["commission"]) + float(r["carry"]),
                "reason": _EXIT_REASONS.get(reason, reason) + f" (trade {i})",
            })  # fmt: skip
        s.execute(insert(Trade), rows)
        s.execute(insert(Operation), ops)

    # -- searches and evaluations
    def record_optimization(self, record: OptimizationRecord) -> int:
        """Write (or update, same key) a search and its trials (trials already written are
        updated in place)."""
        with self.session() as s:
            values = {
                "name": record.name, "target": record.target, "metric": record.metric,
                "mode": record.mode, "status": record.status, "config": dict(record.config),
                "best_trial": record.best_trial, "best_score": finite(record.best_score),
                "best_params": None if record.best_params is None else dict(record.best_params),
                "mlflow_run_id": record.mlflow_run_id, "code_version": code_version(),
                "finished_at": utcnow() if record.status != "running" else None,
                "duration_s": record.duration_s,
            }  # fmt: skip
            found = s.scalar(select(Optimization.id).where(Optimization.key == record.key))
            if found is None:
                opt = Optimization(
                    key=record.key, created_at=record.created_at or utcnow(), **values
                )
                s.add(opt)
                s.flush()
                opt_id = int(opt.id)
            else:
                opt_id = int(found)
                s.execute(update(Optimization).where(Optimization.id == opt_id).values(**values))
            for t in record.trials:
                trial = {
                    "params": finite_dict(t.params), "score": finite(t.score), "status": t.status,
                    "window_scores": [finite(v) for v in t.window_scores],
                    "early_stopped": bool(t.early_stopped), "iterations": int(t.iterations),
                    "duration_s": finite(t.duration_s),
                }  # fmt: skip
                stmt = self._insert(Trial).values(optimization_id=opt_id, key=t.key, **trial)
                s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["optimization_id", "key"], set_=trial
                    )
                )
            return opt_id

    def record_evaluation(self, record: EvaluationRecord) -> int:
        """Write (or replace, same key) an evaluation and its rows."""
        with self.session() as s:
            s.execute(delete(Evaluation).where(Evaluation.key == record.key))
            ev = Evaluation(
                key=record.key, name=record.name, kind=record.kind, status="finished",
                config=dict(record.config), summary=finite_dict(record.summary),
                code_version=code_version(),
            )  # fmt: skip
            s.add(ev)
            s.flush()
            rows = [
                {"evaluation_id": ev.id, "dataset": d, "candidate": c, "role": role,
                 "metrics": finite_dict(m)}
                for d, c, role, m in record.rows
            ]  # fmt: skip
            if rows:
                try:
                    s.execute(insert(EvaluationRow), rows)
                except IntegrityError as exc:
                    raise ExperimentStoreError(
                        f"evaluation {record.key!r}: a (dataset, candidate) pair appears twice"
                    ) from exc
            return int(ev.id)


def _copy_steps(s: Session, episode_id: int, cols: dict[str, list[Any]]) -> None:
    """PostgreSQL's bulk path: ``COPY`` the rows into a temporary table, then one ``INSERT ...
    SELECT ... ON CONFLICT DO NOTHING`` — in the session's transaction (benchmarks: section 10)."""
    names = ["episode_id", *cols]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    n = len(cols["t"])
    columns = list(cols.values())
    for i in range(n):
        row: list[Any] = [episode_id]
        for c in columns:
            v = c[i]
            row.append("" if v is None else (v.isoformat() if isinstance(v, dt.datetime) else v))
        writer.writerow(row)
    buf.seek(0)
    listed = ", ".join(names)
    raw: Any = s.connection().connection.dbapi_connection  # psycopg2's, for copy_expert
    cur = raw.cursor()
    try:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS steps_in ON COMMIT DELETE ROWS AS "  # noqa: S608 - fixed column names
            f"SELECT {listed} FROM steps WITH NO DATA"
        )
        cur.copy_expert(f"COPY steps_in ({listed}) FROM STDIN WITH (FORMAT csv)", buf)
        cur.execute(
            f"INSERT INTO steps ({listed}) SELECT {listed} FROM steps_in "  # noqa: S608 - fixed column names
            "ON CONFLICT (episode_id, t) DO NOTHING"
        )
        cur.execute("TRUNCATE steps_in")
    finally:
        cur.close()


_EXIT_REASONS = {
    "signal": "target changed",
    "stop_loss": "stop loss hit",
    "take_profit": "take profit hit",
    "liquidation": "margin call: liquidated",
    "open": "still open at the end (marked to the last close)",
}
