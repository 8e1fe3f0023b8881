"""The experiment store's writer and migrations: keyed, transactional writes that a re-run or a
resumed run never duplicates; numbers exactly as the kernel produced them; migrations that go up
and down on SQLite and on the stack's real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from raytrader.backtest.engine import run_backtest
from raytrader.backtest.portfolio import run_portfolio_backtest
from raytrader.backtest.record import backtest_record
from raytrader.data import Bars
from raytrader.data.sources import load_bars
from raytrader.db import engine as db_engine
from raytrader.db.models import Backtest, Base, Episode, Operation, Run, Step, Trade, Trial
from raytrader.db.store import (
    EpisodeRecord,
    EvaluationRecord,
    ExperimentStore,
    OptimizationRecord,
    RunSpec,
    StepSampling,
    TrialRecord,
)
from raytrader.errors import ConfigError, ExperimentStoreError
from raytrader.sim import SimConfig
from raytrader.strategies.base import make_strategy
from tests.support.stack_fixture import stack  # noqa: F401

UTC = dt.UTC


def sqlite_store(tmp_path: Path) -> ExperimentStore:
    engine = db_engine.make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    db_engine.upgrade(engine)
    return ExperimentStore(engine)


def count(engine: Engine, model: Any, **where: Any) -> int:
    with Session(engine) as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int(s.scalar(q) or 0)


@pytest.fixture(scope="module")
def goog_result(goog: Bars) -> Any:
    return run_backtest(goog, make_strategy("ma_cross", {}), SimConfig())


@pytest.fixture(scope="module")
def portfolio_result(goog: Bars) -> Any:
    universe = [goog, load_bars("sp500", start="2010-01-01")]
    return run_portfolio_backtest(universe, make_strategy("ma_cross", {}), SimConfig())


def exercise(store: ExperimentStore, result: Any, portfolio: Any) -> None:
    """Every write, twice where a re-run must not duplicate; the numbers read back exactly."""
    e = store.engine
    record = backtest_record(result, "goog")
    first = store.record_backtest(record)
    again = store.record_backtest(record)
    assert count(e, Backtest) == 1
    assert count(e, Trade, backtest_id=again) == len(result.trades) == result.metrics["num_trades"]
    assert count(e, Trade, backtest_id=first) in (0, len(result.trades))  # replaced, not doubled
    assert count(e, Operation, backtest_id=again) == 2 * len(result.trades)
    with Session(e) as s:
        row = s.get(Backtest, again)
        assert row is not None
        assert row.metrics["sharpe"] == result.metrics["sharpe"]
        assert row.start == result.equity.index[0].to_pydatetime()
        assert row.start.tzinfo is not None
        assert row.start.utcoffset() == dt.timedelta(0)
        assert row.equity[-1][1] == result.equity.iloc[-1]
        trades = s.scalars(select(Trade).where(Trade.backtest_id == again)).all()
        # the kernel's identity: the trades' P&L (the open one closed at the end) is the change
        # in equity
        assert sum(t.pnl for t in trades) == pytest.approx(
            result.equity.iloc[-1] - result.config.initial_cash, rel=1e-12
        )
        exits = s.scalars(
            select(Operation).where(Operation.backtest_id == again, Operation.kind != "entry")
        ).all()
        assert {o.kind for o in exits} <= {
            "signal",
            "stop_loss",
            "take_profit",
            "liquidation",
            "open",
        }

    # a resumed run keeps its id and skips the episodes it already wrote
    spec = RunSpec(key="rl:/runs/a", kind="rl", name="ppo on GOOG 1d", seed=3)
    run_id = store.start_run(spec)
    assert store.start_run(spec) == run_id
    steps = pd.DataFrame(
        {
            "t": np.arange(50),
            "time": result.equity.index[:50],
            "reward": np.linspace(-1, 1, 50),
            "equity": result.equity.to_numpy()[:50],
        }
    )
    episode = EpisodeRecord(key="ep-1", length=49, reward_sum=0.0, steps=steps)
    ep_id = store.record_episode(run_id, episode, StepSampling(every=10))
    assert ep_id is not None
    assert store.record_episode(run_id, episode) is None
    assert count(e, Episode) == 1
    with Session(e) as s:
        stored = s.scalars(select(Step).where(Step.episode_id == ep_id).order_by(Step.t)).all()
        assert [x.t for x in stored] == [0, 10, 20, 30, 40, 49]
        for x in stored:  # exactly the values given (floats and times round-trip)
            assert x.reward == steps["reward"].iloc[x.t]
            assert x.equity == steps["equity"].iloc[x.t]
            assert x.time == steps["time"].iloc[x.t].to_pydatetime()
            assert x.action is None
    store.write_steps(ep_id, steps.iloc[:12])  # rows it has are skipped, new ones appended
    assert count(e, Step, episode_id=ep_id) == 6 + 10
    store.finish_run(run_id, metrics={"iterations": 2, "nan": float("nan")})
    with Session(e) as s:
        run = s.get(Run, run_id)
        assert run is not None
        assert (run.status, run.metrics) == ("finished", {"iterations": 2, "nan": None})
        assert run.duration_s is not None
        assert run.duration_s >= 0

    # a failed block marks the run failed with its error
    with pytest.raises(RuntimeError), store.run(RunSpec(key="boom", kind="rules", name="x")):
        raise RuntimeError("worker lost")
    with Session(e) as s:
        failed = s.scalars(select(Run).where(Run.key == "boom")).one()
        assert (failed.status, failed.error) == ("failed", "RuntimeError: worker lost")

    # a restored search updates its trials in place
    trials = [TrialRecord(key=f"t{i}", params={"fast": i}, score=float(i), status="completed",
                          window_scores=[float(i), None]) for i in range(3)]  # fmt: skip
    opt = OptimizationRecord(key="search:/x", name="x", target="rule", metric="validation_sharpe",
                             mode="max", config={}, trials=trials)  # fmt: skip
    opt_id = store.record_optimization(opt)
    more = [*trials, TrialRecord(key="t3", params={"fast": 3}, score=None, status="no_trades")]
    assert store.record_optimization(
        OptimizationRecord(**{**opt.__dict__, "trials": more})
    ) == opt_id  # fmt: skip
    assert count(e, Trial, optimization_id=opt_id) == 4
    with Session(e) as s:
        t0 = s.scalars(select(Trial).where(Trial.key == "t1")).one()
        assert t0.window_scores == [1.0, None]

    # an evaluation's rows; a (dataset, candidate) pair twice is refused whole
    rows = [("goog", "meta", "candidate", {"sharpe": 0.4}), ("goog", "equal", "baseline", {})]
    store.record_evaluation(
        EvaluationRecord(key="ev", name="ev", kind="meta", config={}, rows=rows)
    )
    with pytest.raises(ExperimentStoreError, match="appears twice"):
        store.record_evaluation(
            EvaluationRecord(key="ev2", name="ev2", kind="meta", config={}, rows=[*rows, rows[0]])
        )
    with Session(e) as s:
        assert s.scalar(text("SELECT count(*) FROM evaluations WHERE key = 'ev2'")) == 0

    # a portfolio's trades and operations carry their symbols
    pid = store.record_backtest(backtest_record(portfolio, "goog,sp500"))
    with Session(e) as s:
        trades = s.scalars(select(Trade).where(Trade.backtest_id == pid)).all()
        assert {t.symbol for t in trades} == {"GOOG", "SP500"}
        assert sum(t.pnl for t in trades) == pytest.approx(
            portfolio.equity.iloc[-1] - portfolio.config.initial_cash, rel=1e-12
        )
        ops = s.scalars(select(Operation).where(Operation.backtest_id == pid)).all()
        assert {o.symbol for o in ops} == {"GOOG", "SP500"}
        row = s.get(Backtest, pid)
        assert row is not None
        assert row.symbol == "GOOG,SP500"


def test_every_write_on_sqlite(tmp_path: Path, goog_result: Any, portfolio_result: Any) -> None:
    store = sqlite_store(tmp_path)
    exercise(store, goog_result, portfolio_result)


@pytest.mark.integration
def test_every_write_on_the_stacks_postgresql(
    stack: Any,  # noqa: F811 - the stack fixture
    goog_result: Any,
    portfolio_result: Any,
) -> None:
    engine = db_engine.make_engine(stack.config.store_url)
    with engine.begin() as conn:  # idempotent: start from an empty database
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    assert db_engine.upgrade(engine) == (None, db_engine.head_revision())
    assert db_engine.upgrade(engine)[0] == db_engine.head_revision()  # a second upgrade: no-op
    with engine.connect() as conn:  # JSONB and timestamptz, not text
        kinds = dict(conn.execute(text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'backtests'")).all())  # fmt: skip
    assert kinds["metrics"] == "jsonb"
    assert kinds["start"] == "timestamp with time zone"
    exercise(ExperimentStore(engine), goog_result, portfolio_result)
    engine.dispose()


def test_migrations_go_down_and_up_again(tmp_path: Path) -> None:
    from alembic import command

    engine = db_engine.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    db_engine.upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(db_engine._alembic_config(conn), "base")
    assert db_engine.table_names(engine) == ["alembic_version"]
    db_engine.upgrade(engine)
    assert set(db_engine.table_names(engine)) >= set(Base.metadata.tables)


def test_the_models_and_the_migrations_agree(tmp_path: Path) -> None:
    """A model changed without a migration is caught here (autogenerate finds no difference)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = db_engine.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    db_engine.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_store_behind_the_code_is_refused_with_the_fix(tmp_path: Path) -> None:
    engine = db_engine.make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ExperimentStoreError, match=r"has no schema: run `raytrader db upgrade`"):
        ExperimentStore(engine)


def test_bad_values_are_refused_naming_them(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    naive = dt.datetime(2024, 1, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ExperimentStoreError, match="naive datetime"):
        store.start_run(RunSpec(key="k", kind="rl", name="x", data_start=naive))
    with pytest.raises(ExperimentStoreError, match=r"JSON value at \$.a\[1\] is nan"):
        store.start_run(RunSpec(key="k2", kind="rl", name="x", config={"a": [1.0, float("nan")]}))
    assert count(store.engine, Run) == 0  # nothing half-written
    steps = pd.DataFrame({"t": [0, 1], "bogus": [1.0, 2.0]})
    run_id = store.start_run(RunSpec(key="k3", kind="rl", name="x"))
    with pytest.raises(ExperimentStoreError, match="unknown step column"):
        store.record_episode(run_id, EpisodeRecord(key="e", length=1, reward_sum=0, steps=steps))
    assert count(store.engine, Episode) == 0  # the episode went with its steps
    with pytest.raises(ConfigError, match="PostgreSQL"):
        db_engine.make_engine("mysql://u@h/db")


def test_an_unreachable_store_is_named(tmp_path: Path) -> None:
    engine = db_engine.make_engine(
        "postgresql://raytrader:secret@127.0.0.1:1/raytrader?connect_timeout=1"
    )
    with pytest.raises(ExperimentStoreError, match=r"cannot reach the experiment store") as err:
        ExperimentStore(engine)
    assert "secret" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


@given(n=st.integers(0, 500), every=st.integers(1, 20), cap=st.integers(0, 60))
def test_step_sampling_keeps_every_nth_the_last_and_at_most_the_cap(
    n: int, every: int, cap: int
) -> None:
    keep = StepSampling(every=every, max_per_episode=cap).select(n)
    assert len(keep) <= min(n, cap)
    assert list(keep) == sorted(set(keep.tolist()))
    if n and cap:
        assert keep[-1] == n - 1
    if n and cap >= 2:
        assert keep[0] == 0
    wanted = set(range(0, n, every)) | ({n - 1} if n else set())
    if n and cap >= len(wanted):  # under the cap: exactly every n-th, plus the last
        assert set(keep.tolist()) == wanted


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raytrader.cli", *args],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip


def test_the_db_commands_and_a_recorded_backtest(tmp_path: Path) -> None:
    import os

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "RAYTRADER_DB_URL": url}
    status = cli("db", "status", "--json", env=env)
    assert status.returncode == 1
    assert json.loads(status.stdout)["revision"] is None
    up = cli("db", "upgrade", "--json", env=env)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["to"] == db_engine.head_revision()
    assert cli("backtest", "--no-record", "--json", env=env).returncode == 0
    for _ in range(2):  # the same backtest twice is one row
        done = cli("backtest", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["backtest_id"] >= 1
    rows = json.loads(cli("db", "status", "--json", env=env).stdout)["rows"]
    assert rows["backtests"] == 1
    assert rows["trades"] == json.loads(done.stdout)["trades"]
    # a store that does not answer: the result is still shown, then the error names the store
    down = {**env, "RAYTRADER_DB_URL": "postgresql://raytrader@127.0.0.1:1/raytrader"}
    lost = cli("backtest", "--json", env=down)
    assert lost.returncode == 2
    assert json.loads(lost.stdout)["trades"] == json.loads(done.stdout)["trades"]
    assert "cannot reach the experiment store" in lost.stderr
    assert "--no-record" in lost.stderr
    bad = cli("db", "upgrade", "--url", "mysql://x@y/z", env=env)
    assert bad.returncode == 2
    assert "PostgreSQL" in bad.stderr
