"""Hyperparameter search with Ray Tune: ASHA early stopping, Optuna (TPE) search, MLflow tracking.

The objective is the **validation Sharpe net of costs** (the kernel's equity, the pinned Sharpe of
:mod:`raytrader.backtest.metrics`) averaged over walk-forward validation windows: the series'
usable range minus a held-out tail (``holdout_fraction``, never seen by the search) is cut into
``folds`` consecutive windows; a trial reports the running mean after each window, so ASHA can
stop a poor trial after its first windows (one ASHA "iteration" = one window). A window where the
strategy never trades scores 0.

Targets: ``rule`` (a registered rule strategy's parameters). Each trial is logged to MLflow as a
child run of one parent run per search (``mlflow.parentRunId``), with its parameters and the
metrics of every reported window. ``Tuner.restore`` resumes an interrupted search from
``<output_dir>/<name>`` (``python -m raytrader.training.tune --config ... --restore``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError
from raytrader.sim.config import SimConfig


class Param(StrictConfig):
    """One dimension of the search space."""

    kind: Literal["int", "float", "log", "choice"]
    low: float | None = None
    high: float | None = None
    values: tuple[float | int | str | bool, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.kind == "choice":
            if not self.values:
                raise ValueError("a choice needs values")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.kind} range needs low < high")
        elif self.kind == "log" and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def domain(self) -> Any:
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values or ()))
        lo, hi = float(self.low or 0.0), float(self.high or 0.0)
        if self.kind == "int":
            return tune.randint(int(lo), int(hi) + 1)  # both ends included
        if self.kind == "log":
            return tune.loguniform(lo, hi)
        return tune.uniform(lo, hi)


class SearchConfig(StrictConfig):
    """One search (the ``hyperopt`` pipeline's config file)."""

    name: str = Field(default="search", pattern=r"^[A-Za-z0-9_.-]+$")
    target: Literal["rule"] = "rule"
    strategy: str = "ma_cross"
    data: str = "goog"
    space: dict[str, Param]
    folds: int = Field(default=4, ge=1, le=50)
    holdout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    warmup_bars: int = Field(default=200, ge=0)
    sim: SimConfig = Field(default_factory=SimConfig)
    num_samples: int = Field(default=20, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0.0)
    max_concurrent: int = Field(default=2, ge=1)
    scheduler: Literal["asha", "none"] = "asha"
    search: Literal["optuna", "random"] = "optuna"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=3, ge=2)
    seed: int = 0
    output_dir: str = "runs/tune"
    mlflow: bool = True
    tracking_uri: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if not self.space:
            raise ValueError("space must name at least one parameter")
        if self.grace_period > self.folds:
            raise ValueError("grace_period cannot exceed folds (one ASHA iteration per fold)")
        return self


def fold_windows(n_bars: int, config: SearchConfig) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` bar ranges of the validation windows (the held-out tail excluded)."""
    usable_end = n_bars - int((n_bars - config.warmup_bars) * config.holdout_fraction)
    edges = np.linspace(config.warmup_bars, usable_end, config.folds + 1).astype(int)
    windows = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    if any(b - a < 20 for a, b in windows):
        raise ConfigError(
            f"{n_bars} bars give validation windows under 20 bars; use fewer folds or more data"
        )
    return windows


def window_sharpes(params: dict[str, Any], config: SearchConfig) -> Iterator[float]:
    """Sharpe of each validation window for one parameter set, window by window (a trial's work;
    usable without Tune). Targets are computed on the whole series, so every window starts with
    warm indicators; each window is then backtested on its own, starting flat."""
    from raytrader.backtest.engine import run_targets
    from raytrader.data.sources import load_bars
    from raytrader.strategies.base import make_strategy

    strategy = make_strategy(config.strategy, params)
    bars = load_bars(config.data)
    values = strategy.target_positions(bars.frame).to_numpy(dtype=np.float64)
    for lo, hi in fold_windows(len(bars), config):
        mask = np.zeros(len(bars), dtype=bool)
        mask[lo:hi] = True
        _, metrics = run_targets(bars.head_mask(mask), values[lo:hi], config.sim)
        sharpe = float(metrics["sharpe"][0])
        yield sharpe if np.isfinite(sharpe) else 0.0


def _rule_trainable(params: dict[str, Any], spec: dict[str, Any]) -> None:
    from ray import tune

    config = SearchConfig.model_validate(spec)
    sharpes: list[float] = []
    try:
        for i, s in enumerate(window_sharpes(params, config)):
            sharpes.append(s)
            tune.report({"sharpe": float(np.mean(sharpes)), "fold": i + 1, "fold_sharpe": s})
    except ConfigError as exc:  # e.g. fast >= slow: an invalid corner of the space scores low
        if sharpes:
            raise
        tune.report({"sharpe": -10.0, "fold": config.folds, "invalid": str(exc)[:200]})


def _tuner(config: SearchConfig, parent_run: str | None, restore: bool) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers import FIFOScheduler as _FIFO

    fifo: Any = _FIFO  # unannotated in Ray

    trainable = tune.with_parameters(_rule_trainable, spec=config.model_dump(mode="json"))
    storage = str(Path(config.output_dir).resolve())
    path = Path(storage) / config.name
    if restore:
        if not (path / "tuner.pkl").exists():
            raise ConfigError(f"nothing to restore at {path}")
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    if path.exists():
        raise ConfigError(f"{path} exists: pass --restore to resume it or choose another name")
    callbacks: list[Any] = []
    if parent_run is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=_uri(config),
                experiment_name=f"raytrader-tune-{config.target}",
                tags={"mlflow.parentRunId": parent_run, "raytrader.search": config.name},
                log_params_on_trial_end=False,
            )
        )
    scheduler = (
        ASHAScheduler(
            max_t=config.folds,
            grace_period=config.grace_period,
            reduction_factor=config.reduction_factor,
            time_attr="fold",
        )
        if config.scheduler == "asha"
        else fifo()
    )
    search_alg: Any
    if config.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=config.seed)
    else:  # seeded, so two searches (e.g. with and without ASHA) draw the same configurations
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=config.seed)
    space = {k: p.domain() for k, p in config.space.items()}
    from ray.tune import RunConfig

    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="sharpe",
            mode="max",
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=config.num_samples,
            max_concurrent_trials=config.max_concurrent,
            time_budget_s=config.time_budget_s,
        ),
        run_config=RunConfig(
            name=config.name, storage_path=storage, callbacks=callbacks, verbose=0
        ),
    )


def _uri(config: SearchConfig) -> str:
    from raytrader.tracking import resolve_uri

    return resolve_uri(config.tracking_uri, Path(config.output_dir))


def run_search(config: SearchConfig, *, restore: bool = False) -> dict[str, Any]:
    """Run (or resume) a search; returns the best parameters, its score and the trial count."""
    from raytrader.strategies.runner import ensure_ray

    ensure_ray()
    parent: str | None = None
    if config.mlflow and not restore:
        from mlflow.tracking import MlflowClient

        from raytrader.tracking import experiment_id

        client = MlflowClient(_uri(config))
        exp = experiment_id(
            client, f"raytrader-tune-{config.target}", Path(config.output_dir), _uri(config)
        )
        parent = client.create_run(
            exp,
            run_name=config.name,
            tags={"raytrader.search": config.name, "raytrader.kind": "search"},
        ).info.run_id
        client.log_param(parent, "config", json.dumps(config.model_dump(mode="json"))[:6000])
    from raytrader.tracking import using_uri

    # Ray's MLflow callback sets the process-wide tracking URI; scope it to this search
    scope = using_uri(_uri(config)) if config.mlflow else contextlib.nullcontext()
    with scope:
        results = _tuner(config, parent, restore).fit()
    # only trials that ran every window compete: one ASHA stopped early reports a mean over
    # fewer windows, which is not the objective
    complete = [r for r in results if r.metrics and r.metrics.get("fold") == config.folds]
    if not complete:
        raise ConfigError(f"search {config.name!r}: no trial completed all {config.folds} windows")
    best = max(complete, key=lambda r: float(r.metrics["sharpe"]))
    summary: dict[str, Any] = {
        "best_params": {k: best.config[k] for k in config.space},
        "best_sharpe": float(best.metrics["sharpe"]),
        "trials": len(results),
        "completed": len(complete),
        "errors": len(results.errors),
        "path": str(Path(config.output_dir).resolve() / config.name),
    }
    if parent is not None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(_uri(config))
        client.log_metric(parent, "best_sharpe", float(summary["best_sharpe"]))
        client.set_tag(parent, "best_params", json.dumps(summary["best_params"]))
        client.set_terminated(parent, "FINISHED")
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrader.training.tune --config search.yaml [--restore]``."""
    from raytrader.training.configfile import pipeline_main

    def run(config: SearchConfig, args: Any) -> Iterator[dict[str, Any]]:
        yield run_search(config, restore=args.restore)

    flags = [("restore", "resume an interrupted search")]
    return pipeline_main("python -m raytrader.training.tune", SearchConfig, run, argv, flags)


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: Ray pickles functions by reference
    # to their module, and by value (pydantic classes included, which fails) when in __main__
    from raytrader.training.tune import main as _main

    raise SystemExit(_main())
