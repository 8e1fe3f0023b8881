"""Run many strategies (or parameter sets) in parallel as Ray tasks, then ensemble them.

Ray: ``RAY_ADDRESS`` (or ``address=``) connects to a running cluster; otherwise a local instance is
started with the machine's CPUs. Each strategy is one task; at most ``max_concurrency`` run at once;
a task that exceeds ``timeout_s`` (measured from its submission) is cancelled and reported as failed.
A strategy that is unknown, has bad parameters or raises yields a failed entry with the error text;
the others complete. Execution stats: wall time, summed task time, parallel efficiency = summed task
time / (wall time x workers), with workers = min(max_concurrency, cluster CPUs).

Strategies a user registered in the driver (a script, a notebook, a test module) run on workers
that never imported them: the class travels with the task, its module's code pickled by value.

``await runner.run(...)`` is the async API; ``runner.run_sync(...)`` wraps it for plain scripts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from raytrader import wiring
from raytrader.backtest.engine import run_backtest
from raytrader.backtest.metrics import equity_returns
from raytrader.config import StrictConfig
from raytrader.data.bars import Bars
from raytrader.errors import RaytraderError
from raytrader.sim import SimConfig
from raytrader.strategies.base import Strategy, get_strategy, make_strategy
from raytrader.strategies.ensemble import EnsembleMethod, combine_members


class StrategySpec(StrictConfig):
    """One member: a registered strategy name, its parameters and an optional display label."""

    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.strategy


class RunnerConfig(StrictConfig):
    max_concurrency: int = Field(default=4, ge=1, le=10_000)
    timeout_s: float = Field(default=120.0, gt=0.0)
    #: how the ensemble combines the members (:mod:`raytrader.strategies.ensemble`); None: none
    ensemble: EnsembleMethod | None = "weighted"
    #: per member label, >= 0 (weighted, voting); None: inverse volatility (weighted), equal (voting)
    weights: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] | None = None
    #: bars of member returns behind each inverse-volatility weight
    vol_lookback: int = Field(default=63, ge=2)
    sim: SimConfig = Field(default_factory=SimConfig)
    history_path: str | None = None


@dataclass
class StrategyEntry:
    label: str
    strategy: str
    success: bool
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    targets: np.ndarray | None = None
    equity: np.ndarray | None = None
    execution_time: float = 0.0
    error: str | None = None
    weights: dict[str, float] | None = None
    #: the ensemble's members: on how many bars each was missing (its target NaN)
    members_missing: dict[str, int] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "strategy": self.strategy,
            "success": self.success,
            "params": self.params,
            "metrics": {k: (v if np.isfinite(v) else None) for k, v in self.metrics.items()},
            "execution_time": self.execution_time,
            "error": self.error,
            **({"weights": self.weights} if self.weights is not None else {}),
            **(
                {"members_missing": self.members_missing}
                if self.members_missing is not None
                else {}
            ),
        }


@dataclass
class ExecutionStats:
    wall_time: float
    task_time: float
    workers: int
    parallel_efficiency: float
    successes: int
    failures: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    run_id: str
    started_at: datetime
    symbol: str
    entries: list[StrategyEntry]
    ensemble: StrategyEntry | None
    stats: ExecutionStats
    timeframe: str = ""
    #: the market calendar and bars per year that annualized every entry's metrics
    calendar: str = ""
    periods_per_year: float = float("nan")

    @property
    def success(self) -> bool:
        return self.stats.successes > 0

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "calendar": self.calendar,
            "periods_per_year": self.periods_per_year,
            "success": self.success,
            "strategies": [e.summary() for e in self.entries],
            "ensemble": self.ensemble.summary() if self.ensemble else None,
            "stats": self.stats.as_dict(),
        }


def _execute(
    spec: StrategySpec, bars: Bars, sim: SimConfig, cls: type[Strategy], with_equity: bool = True
) -> StrategyEntry:
    """Body of one task. ``cls`` travels with the task (cloudpickle), so strategies a user registered
    in the driver work on workers that never imported them."""
    t0 = time.perf_counter()
    try:
        strategy = cls(spec.params)
        result = run_backtest(bars, strategy, sim)
        return StrategyEntry(
            label=spec.display,
            strategy=spec.strategy,
            success=True,
            params=strategy.params.model_dump(mode="json"),
            metrics=result.metrics,
            targets=result.targets.to_numpy(),
            equity=result.equity.to_numpy() if with_equity else None,
            execution_time=time.perf_counter() - t0,
        )
    except RaytraderError as exc:
        msg = str(exc)
    except Exception as exc:  # a user strategy can raise anything; isolate it
        msg = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return StrategyEntry(
        label=spec.display,
        strategy=spec.strategy,
        success=False,
        params=dict(spec.params),
        execution_time=time.perf_counter() - t0,
        error=msg,
    )


#: connect to ``address``/``RAY_ADDRESS`` or start a local Ray (:func:`raytrader.wiring.ray`)
ensure_ray = wiring.ray


class StrategyRunner:
    """Parallel strategy execution with a concurrency cap, timeouts, error isolation and ensembles."""

    def __init__(self, config: RunnerConfig | None = None, *, address: str | None = None) -> None:
        self.config = config or RunnerConfig()
        self.address = address
        self.history: list[dict[str, Any]] = []
        self._stored: tuple[Bars, Any] | None = None  # bars already in Ray's object store

    def _bars_ref(self, ray: Any, bars: Bars) -> Any:
        """Upload ``bars`` once and reuse the reference while the same object is passed again."""
        if self._stored is None or self._stored[0] is not bars:
            self._stored = (bars, ray.put(bars))
        return self._stored[1]

    def run_sync(
        self, specs: Sequence[StrategySpec | str | Mapping[str, Any]], bars: Bars
    ) -> RunResult:
        return asyncio.run(self.run(specs, bars))

    async def run(
        self, specs: Sequence[StrategySpec | str | Mapping[str, Any]], bars: Bars
    ) -> RunResult:
        cfg = self.config
        members = [_as_spec(s) for s in specs]
        labels = [m.display for m in members]
        dupes = {x for x in labels if labels.count(x) > 1}
        if dupes:
            raise RaytraderError(
                f"duplicate strategy labels {sorted(dupes)}; give each a distinct label"
            )
        ray = ensure_ray(self.address)
        remote = ray.remote(num_cpus=1, max_retries=0)(_execute)
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        bars_ref = self._bars_ref(ray, bars)
        sem = asyncio.Semaphore(cfg.max_concurrency)
        # member equity curves travel back only when inverse-volatility weights need them
        with_equity = cfg.ensemble == "weighted" and cfg.weights is None

        async def one(spec: StrategySpec) -> StrategyEntry:
            try:  # validate before spending a task on it
                cls = type(make_strategy(spec.strategy, spec.params))
            except RaytraderError as exc:
                return StrategyEntry(
                    spec.display, spec.strategy, False, dict(spec.params), error=str(exc)
                )
            _ship_by_value(cls)
            async with sem:
                ref = remote.remote(spec, bars_ref, cfg.sim, cls, with_equity)
                try:
                    entry: StrategyEntry = await asyncio.wait_for(ref, timeout=cfg.timeout_s)
                    return entry
                except TimeoutError:
                    ray.cancel(ref, force=True)
                    err = f"timed out after {cfg.timeout_s:g} s (task cancelled)"
                except Exception as exc:  # worker crash, cancelled task, serialization error
                    err = f"task failed: {type(exc).__name__}: {exc}"
                return StrategyEntry(
                    spec.display,
                    spec.strategy,
                    False,
                    dict(spec.params),
                    execution_time=cfg.timeout_s,
                    error=err,
                )

        entries = list(await asyncio.gather(*(one(m) for m in members)))
        wall = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(cfg.max_concurrency, cpus, len(members)))
        task_time = sum(e.execution_time for e in entries if e.error is None or e.success)
        stats = ExecutionStats(
            wall_time=wall,
            task_time=task_time,
            workers=workers,
            parallel_efficiency=task_time / (wall * workers) if wall > 0 else 0.0,
            successes=sum(e.success for e in entries),
            failures=sum(not e.success for e in entries),
        )
        ensemble = self._ensemble(entries, bars) if cfg.ensemble else None
        result = RunResult(
            uuid.uuid4().hex[:12],
            started,
            bars.symbol,
            entries,
            ensemble,
            stats,
            timeframe=bars.timeframe.name,
            calendar=bars.calendar.value,
            periods_per_year=bars.periods_per_year,
        )
        self._remember(result)
        return result

    def sweep_sync(
        self, bars: Bars, strategy: str, grid: Mapping[str, Sequence[Any]], **kw: Any
    ) -> Any:
        return asyncio.run(self.sweep(bars, strategy, grid, **kw))

    async def sweep(
        self,
        bars: Bars,
        strategy: str,
        grid: Mapping[str, Sequence[Any]],
        *,
        fixed: Mapping[str, Any] | None = None,
        sort_by: str = "sharpe",
        chunks: int | None = None,
    ) -> Any:
        """A parameter grid split into ``chunks`` (default: 2 x workers) Ray tasks, each a vectorized
        sweep of its share; the merged table is sorted by ``sort_by`` (descending) and equals the
        in-process :func:`raytrader.backtest.engine.sweep` row for row."""
        import pandas as pd

        from raytrader.backtest.engine import check_sort_key, plan_grid, run_grid, sort_table

        check_sort_key(sort_by)
        plan = plan_grid(strategy, grid, fixed)
        ray = ensure_ray(self.address)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(self.config.max_concurrency, cpus))
        n = len(plan.param_sets)
        parts = max(1, min(n, chunks or 2 * workers))
        bounds = [round(i * n / parts) for i in range(parts + 1)]
        _ship_by_value(get_strategy(strategy))
        remote = ray.remote(num_cpus=1, max_retries=0)(run_grid)
        bars_ref = self._bars_ref(ray, bars)
        sem = asyncio.Semaphore(self.config.max_concurrency)

        async def one(lo: int, hi: int) -> pd.DataFrame:
            async with sem:
                ref = remote.remote(bars_ref, plan.chunk(lo, hi), self.config.sim)
                try:
                    table: pd.DataFrame = await asyncio.wait_for(ref, timeout=self.config.timeout_s)
                except TimeoutError:
                    ray.cancel(ref, force=True)
                    raise RaytraderError(
                        f"sweep chunk {lo}..{hi} of {strategy} timed out after {self.config.timeout_s:g} s"
                    ) from None
                return table

        tables = await asyncio.gather(*(one(bounds[i], bounds[i + 1]) for i in range(parts)))
        return sort_table(pd.concat(tables, ignore_index=True), sort_by, plan.skipped)

    def _ensemble(self, entries: list[StrategyEntry], bars: Bars) -> StrategyEntry | None:
        cfg = self.config
        ok = [e for e in entries if e.success and e.targets is not None]
        if not ok or cfg.ensemble is None:
            return None
        t0 = time.perf_counter()
        targets = {e.label: e.targets for e in ok if e.targets is not None}
        rets = {
            e.label: equity_returns(e.equity.reshape(-1, 1), cfg.sim.initial_cash)[:, 0]
            for e in ok
            if e.equity is not None
        }  # present only for inverse-volatility weights
        try:
            combined = combine_members(
                targets,
                cfg.ensemble,
                weights=cfg.weights,
                member_returns=rets,
                lookback=cfg.vol_lookback,
            )
        except RaytraderError as exc:
            return StrategyEntry("ensemble", f"ensemble:{cfg.ensemble}", False, {}, error=str(exc))
        import pandas as pd

        series = pd.Series(combined.target, index=bars.index)
        result = run_backtest(bars, series, cfg.sim, name="ensemble")
        return StrategyEntry(
            label="ensemble",
            strategy=f"ensemble:{cfg.ensemble}",
            success=True,
            params={"method": cfg.ensemble, "members": list(targets)},
            metrics=result.metrics,
            targets=combined.target,
            equity=result.equity.to_numpy(),
            execution_time=time.perf_counter() - t0,
            weights=combined.weights,
            members_missing=combined.members_missing,
        )

    def _remember(self, result: RunResult) -> None:
        ok = [e for e in result.entries if e.success]
        best = max(ok, key=lambda e: _finite_or_floor(e.metrics.get("sharpe")), default=None)
        record = {
            "run_id": result.run_id,
            "started_at": result.started_at.isoformat(),
            "symbol": result.symbol,
            "strategies": [e.label for e in result.entries],
            "stats": result.stats.as_dict(),
            "best": best.label if best else None,
        }
        self.history.append(record)
        if self.config.history_path:
            path = Path(self.config.history_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def _finite_or_floor(v: float | None) -> float:
    return float(v) if v is not None and np.isfinite(v) else float("-inf")


def _ship_by_value(cls: type[Strategy]) -> None:
    """Send a user strategy's code with the task: workers may not be able to import the module that
    defined it (a script, a notebook, a test file), so it is pickled by value, not by reference."""
    module = sys.modules.get(cls.__module__)
    if (
        module is None
        or cls.__module__.split(".")[0] == "raytrader"
        or cls.__module__ == "__main__"
    ):
        return  # raytrader is installed on every worker; __main__ is pickled by value already
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]  # vendored, unannotated


def _as_spec(s: StrategySpec | str | Mapping[str, Any]) -> StrategySpec:
    if isinstance(s, StrategySpec):
        return s
    if isinstance(s, str):
        return StrategySpec(strategy=s)
    return StrategySpec.parse(dict(s), where="strategy spec")


def record_run(
    result: RunResult, bars: Bars, config: RunnerConfig, data: str, url: str | None = None
) -> int | None:
    """Write a ``run-strategies`` run to the experiment store: one run (kind ``rules``) with a
    backtest (trades and operations) per successful member and one for the ensemble. Returns the
    run's id (``None``: no store configured). Each member's trades come from running its targets
    through the kernel again here (the tasks return targets and metrics; the kernel is
    deterministic)."""
    from raytrader.backtest.record import targets_record
    from raytrader.db.store import ExperimentStore, RunSpec

    store = ExperimentStore.configured(url)
    if store is None:
        return None
    spec = RunSpec.for_bars(
        bars,
        key=f"rules:{result.run_id}",
        kind="rules",
        what="run-strategies",
        config=config.model_dump(mode="json"),
        data=data,
    )
    try:
        run_id = store.start_run(spec)
        members = [*result.entries, *([result.ensemble] if result.ensemble else [])]
        try:
            for entry in members:
                if entry.success and entry.targets is not None:
                    record = targets_record(
                        bars,
                        entry.targets,
                        config.sim,
                        strategy=entry.strategy,
                        params=entry.params,
                        data=data,
                        run_key=spec.key,
                    )
                    store.record_backtest(record)
        except BaseException as exc:
            store.finish_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        ensemble = result.ensemble
        store.finish_run(
            run_id,
            status="finished" if result.success else "failed",
            metrics={
                "members": len(result.entries),
                "succeeded": sum(e.success for e in result.entries),
                "wall_time_s": result.stats.wall_time,
                **(
                    {f"ensemble_{k}": v for k, v in ensemble.metrics.items()}
                    if ensemble is not None and ensemble.success
                    else {}
                ),
            },
            error=None if result.success else "every member failed",
        )
        return run_id
    finally:
        store.close()
