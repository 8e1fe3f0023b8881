"""The parallel runner on a real local Ray instance."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raytrader.data import load_bars
from raytrader.errors import RaytraderError
from raytrader.strategies.base import Strategy, StrategyParams, register
from raytrader.strategies.runner import RunnerConfig, StrategyRunner, StrategySpec

pytestmark = pytest.mark.integration

FIVE = ["rsi", "macd", "bollinger", "momentum", "mean_reversion"]


class SleepyParams(StrategyParams):
    seconds: float = 30.0


@register
class Sleepy(Strategy):
    """Sleeps, then holds long: a stand-in for a runaway user strategy."""

    name = "sleepy_test"
    Params = SleepyParams
    params: SleepyParams

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        time.sleep(self.params.seconds)
        return pd.Series(1.0, index=frame.index)


@register
class Exploding(Strategy):
    name = "exploding_test"

    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        raise ZeroDivisionError("boom in user code")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def goog():
    return load_bars("goog")


def test_runner_runs_five_strategies_and_a_weighted_ensemble(ray_local, goog) -> None:
    result = StrategyRunner(RunnerConfig(max_concurrency=2)).run_sync(FIVE, goog)
    assert [e.label for e in result.entries] == FIVE
    assert all(e.success for e in result.entries)
    assert result.ensemble is not None
    assert result.ensemble.success
    assert set(result.ensemble.weights or {}) == set(FIVE)
    assert result.ensemble.members_missing == dict.fromkeys(FIVE, 0)
    assert result.summary()["ensemble"]["members_missing"] == dict.fromkeys(FIVE, 0)
    assert result.stats.successes == 5
    assert result.stats.failures == 0
    assert result.stats.workers == 2
    assert result.stats.parallel_efficiency > 0.0
    for e in result.entries:
        assert e.targets is not None
        assert len(e.targets) == len(goog)
        assert np.isfinite(e.metrics["final_equity"])


def test_runner_results_equal_in_process_backtests(ray_local, goog) -> None:
    from raytrader.backtest import run_backtest
    from raytrader.strategies import make_strategy

    result = StrategyRunner(RunnerConfig(ensemble=None)).run_sync(["macd", "momentum"], goog)
    for e in result.entries:
        local = run_backtest(goog, make_strategy(e.strategy), RunnerConfig().sim)
        assert _same(e.metrics, local.metrics)


def test_a_recorded_run_holds_each_members_backtest_as_the_task_scored_it(
    ray_local, goog, tmp_path: Path
) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from raytrader.db.engine import make_engine, upgrade
    from raytrader.db.models import Backtest, Run, Trade
    from raytrader.strategies.runner import record_run

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(make_engine(url))
    cfg = RunnerConfig(max_concurrency=2)
    result = StrategyRunner(cfg).run_sync(["macd", "momentum", "exploding_test"], goog)
    run_id = record_run(result, goog, cfg, "goog", url)
    with Session(make_engine(url)) as s:
        run = s.get(Run, run_id)
        assert run is not None
        assert (run.kind, run.status, run.metrics["succeeded"]) == ("rules", "finished", 2)
        rows = {b.strategy: b for b in s.scalars(select(Backtest).where(Backtest.run_id == run_id))}
        assert set(rows) == {"macd", "momentum", "ensemble:weighted"}  # the failed one: none
        for e in [*result.entries[:2], result.ensemble]:
            assert e is not None
            stored = rows[e.strategy]
            # the driver's re-run of the targets is the task's backtest, number for number
            assert {k: stored.metrics[k] for k in e.metrics} == {
                k: (v if np.isfinite(v) else None) for k, v in e.metrics.items()
            }
            trades = s.scalars(select(Trade).where(Trade.backtest_id == stored.id)).all()
            assert len(trades) == e.metrics["num_trades"]


def test_runner_isolates_unknown_strategy_bad_params_and_exceptions(ray_local, goog) -> None:
    specs = [
        "momentum",
        "no_such_strategy",
        {"strategy": "ma_cross", "params": {"fast": 30, "slow": 10}, "label": "bad_ma"},
        {"strategy": "rsi", "params": {"period": "fourteen"}, "label": "bad_rsi"},
        "exploding_test",
    ]
    result = StrategyRunner(RunnerConfig(ensemble="average")).run_sync(specs, goog)
    by = {e.label: e for e in result.entries}
    assert by["momentum"].success
    assert "unknown strategy 'no_such_strategy'" in (by["no_such_strategy"].error or "")
    assert "fast (30) must be smaller than slow (10)" in (by["bad_ma"].error or "")
    assert "period" in (by["bad_rsi"].error or "")
    assert "ZeroDivisionError: boom in user code" in (by["exploding_test"].error or "")
    assert result.stats.failures == 4
    assert result.ensemble is not None
    assert result.ensemble.params["members"] == ["momentum"]


def test_runner_cancels_a_strategy_past_its_timeout(ray_local, goog) -> None:
    cfg = RunnerConfig(timeout_s=3.0, ensemble=None)
    t0 = time.perf_counter()
    result = StrategyRunner(cfg).run_sync(["momentum", {"strategy": "sleepy_test"}], goog)
    elapsed = time.perf_counter() - t0
    by = {e.label: e for e in result.entries}
    assert by["momentum"].success
    assert not by["sleepy_test"].success
    assert "timed out after 3 s" in (by["sleepy_test"].error or "")
    assert elapsed < 25.0  # far below the 30 s the task would have slept


def test_runner_concurrency_cap_serializes_tasks(ray_local, goog) -> None:
    specs = [
        {"strategy": "sleepy_test", "params": {"seconds": 1.0}, "label": f"s{i}"} for i in range(3)
    ]
    result = StrategyRunner(RunnerConfig(max_concurrency=1, ensemble=None)).run_sync(specs, goog)
    assert all(e.success for e in result.entries)
    assert result.stats.workers == 1
    assert result.stats.wall_time >= 3.0


def test_runner_async_api_and_history(ray_local, goog, tmp_path: Path) -> None:
    hist = tmp_path / "history.jsonl"
    runner = StrategyRunner(RunnerConfig(history_path=str(hist), ensemble="voting"))

    async def go():
        return await runner.run([StrategySpec(strategy="macd"), StrategySpec(strategy="rsi")], goog)

    first = asyncio.run(go())
    second = runner.run_sync(["momentum"], goog)
    assert [h["run_id"] for h in runner.history] == [first.run_id, second.run_id]
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    assert [x["run_id"] for x in lines] == [first.run_id, second.run_id]
    assert lines[0]["strategies"] == ["macd", "rsi"]


def test_runner_rejects_duplicate_labels(ray_local, goog) -> None:
    with pytest.raises(RaytraderError, match="duplicate strategy labels"):
        StrategyRunner().run_sync(["rsi", "rsi"], goog)


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Exact equality of metric dicts, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        (np.isnan(a[k]) and np.isnan(b[k])) or a[k] == b[k] for k in a
    )


def test_runner_is_deterministic(ray_local, goog) -> None:
    runner = StrategyRunner(RunnerConfig(max_concurrency=2))
    a = runner.run_sync(FIVE, goog)
    b = runner.run_sync(FIVE, goog)
    for x, y in zip(a.entries, b.entries, strict=True):
        assert _same(x.metrics, y.metrics)
        assert np.array_equal(x.targets, y.targets)
    assert a.ensemble is not None
    assert b.ensemble is not None
    assert _same(a.ensemble.metrics, b.ensemble.metrics)


def test_runner_sweep_over_ray_equals_the_in_process_sweep(ray_local, goog) -> None:
    from raytrader.backtest import sweep

    grid = {"fast": list(range(5, 30, 3)), "slow": list(range(10, 60, 5))}
    local = sweep(goog, "ma_cross", grid)
    remote = StrategyRunner(RunnerConfig(max_concurrency=2)).sweep_sync(
        goog, "ma_cross", grid, chunks=5
    )
    pd.testing.assert_frame_equal(remote, local)
    assert remote.attrs["skipped"] == local.attrs["skipped"] > 0


def test_runner_sweep_names_unknown_parameters(ray_local, goog) -> None:
    from raytrader.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['fsat'\]"):
        StrategyRunner().sweep_sync(goog, "ma_cross", {"fsat": [1, 2]})


def test_cli_sweep_on_ray(ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    from raytrader.cli import main

    main(
        [
            "sweep",
            "--data",
            "goog",
            "--grid",
            "fast=5:20:5",
            "--grid",
            "slow=10:30:10",
            "--ray",
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["combinations"] == 8
