"""A seeded experiment store and the experiment API over it.

:func:`seed` writes, through :class:`ExperimentStore` (the writer the commands use): a real
backtest (``ma_cross`` on GOOG), an RL run with two episodes (steps and trades), a rules run that
wrote a backtest of its own, a few more runs for the listings, a search with three trials (one
early stopped, one without a score) and an evaluation with four rows. ``seeded`` is that store
in SQLite (once per session); ``client`` a ``TestClient`` with the read token ``"r" * 20`` and the
admin token ``"a" * 20``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from raytrader.api.app import create_app
from raytrader.api.auth import ApiTokens
from raytrader.db.engine import make_engine, upgrade
from raytrader.db.store import (
    BacktestRecord,
    EpisodeRecord,
    EvaluationRecord,
    ExperimentStore,
    OptimizationRecord,
    RunSpec,
    TrialRecord,
)

READ = "r" * 20
ADMIN = "a" * 20
TOKENS = ApiTokens(read=READ, admin=ADMIN)
AUTH = {"Authorization": f"Bearer {READ}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
#: steps written per episode (all of them: StepSampling's default keeps up to 5000)
STEPS = 80
#: trades of each episode (the first rows of the backtest's)
EPISODE_TRADES = 3
EXTRA_RUNS = 5
EVAL_ROWS = (
    ("goog", "ensemble", "candidate", {"sharpe": 1.1, "total_return": 0.4}),
    ("goog", "buy_hold", "baseline", {"sharpe": 0.6, "total_return": None}),
    ("eurusd", "ensemble", "candidate", {"sharpe": -0.2, "total_return": -0.05}),
    ("eurusd", "buy_hold", "baseline", {"sharpe": 0.1, "total_return": 0.01}),
)
TRIALS = (
    TrialRecord("trial_0", {"fast": 5, "slow": 20}, 0.5, "stopped", (0.4, 0.6), True, 2, 1.5),
    TrialRecord("trial_1", {"fast": 10, "slow": 30}, None, "error", (None,), False, 0, 0.1),
    TrialRecord("trial_2", {"fast": 20, "slow": 60}, 1.25, "finished", (1.0, 1.5), False, 4, 3.0),
)


@dataclass
class Seeded:
    """What :func:`seed` wrote and the ids it got."""

    engine: Engine
    result: Any  # the BacktestResult
    backtest_id: int
    rl_run_id: int
    rules_run_id: int
    rules_backtest_id: int
    episode_ids: list[int]
    episode_steps: dict[int, pd.DataFrame]
    optimization_id: int
    evaluation_id: int
    run_ids: list[int] = field(default_factory=list)
    paper_session_id: int = 0


def backtest_record(result: Any, *, run_key: str | None = None) -> BacktestRecord:
    return BacktestRecord(
        strategy=result.strategy,
        params=result.params,
        data="goog",
        symbol=result.symbol,
        timeframe=result.timeframe,
        sim=result.config.model_dump(mode="json"),
        metrics=result.metrics,
        equity=result.equity,
        trades=result.trades,
        run_key=run_key,
    )


def _steps(seed: int, bars: Any, first: int) -> pd.DataFrame:
    """Steps on GOOG's own bars from bar ``first`` (so the episode's trades, taken from the
    backtest, fall on them), with seeded actions and rewards."""
    rng = np.random.default_rng(seed)
    window = bars.frame.iloc[first : first + STEPS]
    return pd.DataFrame(
        {
            "t": np.arange(STEPS),
            "time": window.index,
            "action": rng.integers(0, 3, STEPS).astype(float),
            "position": rng.uniform(-1, 1, STEPS),
            "reward": rng.normal(0, 0.01, STEPS),
            "equity": 10_000 + rng.normal(0, 100, STEPS).cumsum(),
            "price": window["close"].to_numpy(),
        }
    )


def seed(engine: Engine) -> Seeded:
    """Write the test data set to a migrated (and empty) store."""
    from raytrader.backtest.engine import run_backtest
    from raytrader.data import load_bars
    from raytrader.sim import SimConfig
    from raytrader.strategies.base import make_strategy

    bars = load_bars("goog")
    result = run_backtest(bars, make_strategy("ma_cross", {}), SimConfig())
    store = ExperimentStore(engine)
    backtest_id = store.record_backtest(backtest_record(result))

    spec = RunSpec(
        key="rl-goog-1", kind="rl", name="ppo goog", config={"algo": "PPO", "lr": 3e-4},
        data="goog", symbol="GOOG", timeframe="1d", seed=7, mlflow_run_id="0123456789abcdef",
    )  # fmt: skip
    episode_ids: list[int] = []
    steps: dict[int, pd.DataFrame] = {}
    with store.run(spec) as rl_run_id:
        for i in range(2):
            trades = result.trades.iloc[i : i + EPISODE_TRADES]
            first = int(bars.index.get_loc(trades["entry_time"].iloc[0])) - 2
            frame = _steps(i, bars, first)
            episode_id = store.record_episode(
                rl_run_id,
                EpisodeRecord(
                    key=f"ep-{i}", length=STEPS, reward_sum=float(frame["reward"].sum()),
                    iteration=i, total_return=0.01 * (i + 1), sharpe=0.5 + i,
                    max_drawdown=-0.1, trades=EPISODE_TRADES, steps=frame,
                    trade_rows=trades,
                ),
            )  # fmt: skip
            assert episode_id is not None
            episode_ids.append(episode_id)
            steps[episode_id] = frame
    rules = RunSpec(key="rules-goog", kind="rules", name="run-strategies goog", symbol="GOOG")
    with store.run(rules) as rules_run_id:
        other = run_backtest(bars, make_strategy("ma_cross", {"fast": 5, "slow": 30}), SimConfig())
        rules_backtest_id = store.record_backtest(backtest_record(other, run_key="rules-goog"))
    run_ids = [rl_run_id, rules_run_id]
    for i in range(EXTRA_RUNS):
        kind = "supervised" if i % 2 else "rl"
        extra = RunSpec(key=f"extra-{i}", kind=kind, name=f"extra {i}", symbol="EURUSD")
        run_ids.append(store.start_run(extra))  # left running
    optimization_id = store.record_optimization(
        OptimizationRecord(
            key="tune-ma-cross", name="tune ma_cross", target="rules", metric="sharpe",
            mode="max", config={"samples": 3}, trials=TRIALS, best_trial="trial_2",
            best_score=1.25, best_params={"fast": 20, "slow": 60}, duration_s=4.6,
        )
    )  # fmt: skip
    evaluation_id = store.record_evaluation(
        EvaluationRecord(
            key="eval-1", name="ensemble vs buy and hold", kind="meta", config={"folds": 3},
            rows=EVAL_ROWS, summary={"ensemble": "claim holds on 1 of 2"},
        )
    )  # fmt: skip
    paper_session_id = seed_paper(store)
    return Seeded(
        engine=engine, result=result, backtest_id=backtest_id, rl_run_id=rl_run_id,
        rules_run_id=rules_run_id, rules_backtest_id=rules_backtest_id,
        episode_ids=episode_ids, episode_steps=steps, optimization_id=optimization_id,
        evaluation_id=evaluation_id, run_ids=run_ids, paper_session_id=paper_session_id,
    )  # fmt: skip


#: the paper session's steps: (time, equity, {symbol: (target or None, reason)}, fills)
PAPER_STEPS = 3


def seed_paper(store: ExperimentStore) -> int:
    """A paper session of two symbols, three steps, written through its ledger: a decision without
    a target (and its reason) and one with an explanation, two fills."""
    from raytrader.paper.config import PaperConfig
    from raytrader.paper.ledger import BarWrite, Ledger

    ledger = Ledger(store)
    config = PaperConfig.model_validate(
        {"session": "paper-seed", "symbols": [{"symbol": "AAA"}, {"symbol": "BBB"}]}
    )
    resume = ledger.open(config)
    t0 = pd.Timestamp("2024-01-02", tz="UTC")
    for n in range(PAPER_STEPS):
        t = t0 + pd.Timedelta(days=n)
        bar = {"open": 100.0 + n, "high": 102.0 + n, "low": 99.0 + n, "close": 101.0 + n,
               "volume": 1e6}  # fmt: skip
        units = 0.0 if n == 0 else 49.0
        ledger.commit_bar(resume.session_id, BarWrite(
            time=t, bars={"AAA": bar, "BBB": bar}, offsets={("bars.1d", 0): 2 * n + 2},
            step={"number": n, "time": t.to_pydatetime(), "equity": 10_000.0 + n, "cash": 5_000.0,
                  "drawdown": 0.0, "gross_exposure": 0.5, "lag_s": 1.5},
            decisions=[
                {"number": n, "symbol": "AAA", "target": 1.0, "action": "buy", "reason": None,
                 "model": "raytrader-ensemble", "model_version": "3",
                 "explanation": {"regime": "calm"}, "feature_time": None, "latency_ms": 4.0},
                {"number": n, "symbol": "BBB", "target": None, "action": "keep",
                 "reason": "stale features", "model": None, "model_version": None,
                 "explanation": None, "feature_time": None, "latency_ms": 30.0},
            ],
            fills=[{"number": n, "seq": 0, "symbol": "AAA", "units": 49.0, "price": 100.0 + n,
                    "commission": 4.9, "reason": "signal"}] if n == 1 else [],
            positions=[{"number": n, "symbol": s, "units": units if s == "AAA" else 0.0,
                        "price": 101.0 + n, "value": (units if s == "AAA" else 0.0) * (101.0 + n)}
                       for s in ("AAA", "BBB")],
            session={"steps": n + 1, "equity": 10_000.0 + n, "last_bar_time": t.to_pydatetime(),
                     "periods_per_year": 252.0, "peak_equity": 10_002.0},
        ))  # fmt: skip
    return resume.session_id


def migrated_sqlite(root: Path) -> Engine:
    engine = make_engine(f"sqlite:///{root}/x.db")
    upgrade(engine)
    return engine


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    engine = migrated_sqlite(tmp_path_factory.mktemp("store"))
    yield seed(engine)
    engine.dispose()


@pytest.fixture
def client(seeded: Seeded) -> TestClient:
    return TestClient(create_app(seeded.engine, TOKENS))


#: an address nothing listens on (the discard port): a backend there is down, at once
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _backends_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The control routes' backends (raytrader.api.control.Backends.from_settings) point at
    a throwaway MLflow store and at addresses nothing answers, never at a developer's stack or
    at ``runs/`` in the working directory."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", NOWHERE)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAYTRADER_SERVE_URL", NOWHERE)
    monkeypatch.setenv("RAYTRADER_STREAM_METRICS_URL", f"{NOWHERE}/metrics")
