"""Hyperparameter search with Ray Tune: ASHA early stopping, Optuna (TPE) search, MLflow tracking.

The objective is the **validation Sharpe net of costs** (the kernel's equity, the pinned Sharpe of
:mod:`raytrader.backtest.metrics`) averaged over walk-forward validation windows. The series' usable
bars (after ``warmup_bars``) split into a training head (``train_fraction``; none for ``rule``, half
by default for ``supervised`` and ``rl``), ``folds`` consecutive validation windows, and a held-out
tail (``holdout_fraction``) the search never sees. A window where nothing trades scores 0.

Targets (what a trial computes: :mod:`raytrader.training.objectives`):

``rule``
    a registered rule strategy's parameters (``base`` holds the fixed ones).
``supervised``
    a :class:`~raytrader.models.supervised.ClassifierConfig` (``base``) with sampled fields at
    dotted paths (``params.n_estimators``, ``labels.horizon``, ``threshold``), fitted on everything
    before each window (purged) and scored on it.
``rl``
    an :class:`~raytrader.training.rl.RLConfig` (``base``; ``lr``, ``gamma``, ``env.reward``, ...)
    trained for ``base.iterations`` RLlib iterations on the training head, scored on every window
    after each iteration.

ASHA's unit is the window for ``rule``/``supervised`` (a trial reports the running mean after each
window, so a poor trial stops after its first windows) and the RLlib iteration for ``rl``. Only
trials that reached the last unit compete for best. Each trial is logged to MLflow as a child run of
one parent run per search (``mlflow.parentRunId``), with its parameters and every report's metrics.
``Tuner.restore`` resumes an interrupted search from ``<output_dir>/<name>`` (``--restore``); an
``rl`` trial continues from its last Tune checkpoint (every ``checkpoint_every`` iterations).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator, Mapping
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

    def corner(self, end: Literal["low", "high"]) -> Any:
        """The value at one end of the range (the first or last choice)."""
        if self.kind == "choice":
            values = self.values or ()
            return values[0] if end == "low" else values[-1]
        value = self.low if end == "low" else self.high
        return int(value or 0) if self.kind == "int" else value

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


RL_OWNED = ("train_fraction", "num_env_runners", "mlflow", "tracking_uri", "output_dir")
"""RLConfig fields the search sets itself (``train_fraction`` from the search's)."""


class SearchConfig(StrictConfig):
    """One search (the ``hyperopt`` pipeline's config file)."""

    name: str = Field(default="search", pattern=r"^[A-Za-z0-9_.-]+$")
    target: Literal["rule", "supervised", "rl"] = "rule"
    #: rule target: the strategy searched
    strategy: str = "ma_cross"
    #: load_bars spec; default: goog for rule, the base config's own data for supervised and rl
    data: str | None = None
    #: the target's fixed settings that sampled values override (module docstring)
    base: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param]
    folds: int = Field(default=4, ge=1, le=50)
    #: share of the usable bars before the first window (default 0 for rule, 0.5 otherwise)
    train_fraction: float | None = Field(default=None, ge=0.0, lt=1.0)
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
    #: rule target: register the best parameters as a pyfunc under this name (in the parent run)
    register_as: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if not self.space:
            raise ValueError("space must name at least one parameter")
        if self.register_as is not None and (self.target != "rule" or not self.mlflow):
            raise ValueError(
                "register_as is for the rule target with mlflow on; train the best supervised or "
                "rl config (best_config) to register it"
            )
        if self.fractions[0] + self.holdout_fraction >= 1.0:
            raise ValueError("train_fraction + holdout_fraction leave no bars to validate on")
        if self.target == "rl":
            owned = sorted(set(self.base) & set(RL_OWNED))
            if owned:
                raise ValueError(f"base must not set {owned}: the search sets them")
        if self.grace_period > self.steps:
            unit = "iterations" if self.target == "rl" else "folds"
            raise ValueError(f"grace_period cannot exceed {unit} ({self.steps})")
        for corner in ("low", "high"):  # a typo in a path or a type fails here, not in a trial
            try:
                self.target_config({k: p.corner(corner) for k, p in self.space.items()})
            except ConfigError as exc:
                if self.target != "rule":
                    raise ValueError(f"base + space ({corner} end): {exc}") from exc
        return self

    @property
    def fractions(self) -> tuple[float, float]:
        """(train, holdout) shares of the usable bars."""
        train = self.train_fraction
        if train is None:
            train = 0.0 if self.target == "rule" else 0.5
        return train, self.holdout_fraction

    @property
    def steps(self) -> int:
        """ASHA's ``max_t``: windows, or RLlib iterations for ``rl``."""
        if self.target == "rl":
            return int(self.base.get("iterations", 20))
        return self.folds

    @property
    def progress_attr(self) -> str:
        """The reported counter ASHA schedules on (``fold`` or ``iteration``)."""
        return "iteration" if self.target == "rl" else "fold"

    def final_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` with ``params`` as a config to train for real (``raytrader train``): without
        the settings the search imposes on its trials (no final fit, its own train split)."""
        from raytrader.training.objectives import with_params

        merged = with_params(self.base, params)
        if self.target == "rule":
            return merged
        if self.data is not None:
            merged["data"] = self.data
        if self.target == "supervised":
            from raytrader.models.supervised import ClassifierConfig

            return ClassifierConfig.parse(merged).model_dump(mode="json")
        from raytrader.training.rl import RLConfig

        return RLConfig.parse(merged).model_dump(mode="json")

    def target_config(self, params: Mapping[str, Any]) -> Any:
        """What a trial runs: the rule strategy's parameter dict, or the ClassifierConfig /
        RLConfig of ``base`` with ``params`` set at their paths."""
        from raytrader.training.objectives import with_params

        merged = with_params(self.base, params)
        where = f"search {self.name!r} {self.target} config"
        if self.target == "rule":
            return merged
        if self.target == "supervised":
            from raytrader.models.supervised import ClassifierConfig

            merged.update(fit_final=False, importance="none")
            if self.data is not None:
                merged["data"] = self.data
            return ClassifierConfig.parse(merged, where=where)
        from raytrader.training.rl import RLConfig

        merged.update(
            train_fraction=self.fractions[0], num_env_runners=0, mlflow=False, output_dir="."
        )
        if self.data is not None:
            merged["data"] = self.data
        return RLConfig.parse(merged, where=where)


def fold_windows(
    n_bars: int, config: SearchConfig, start: int | None = None
) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` bar ranges of the validation windows: from ``start`` (default: after the
    warm-up and the training head) to the held-out tail."""
    usable = n_bars - config.warmup_bars
    usable_end = n_bars - int(usable * config.holdout_fraction)
    if start is None:
        start = config.warmup_bars + int(usable * config.fractions[0])
    edges = np.linspace(start, usable_end, config.folds + 1).astype(int)
    windows = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    if any(b - a < 20 for a, b in windows):
        raise ConfigError(
            f"{n_bars} bars give validation windows under 20 bars; use fewer folds or more data"
        )
    return windows


def _tuner(config: SearchConfig, parent_run: str | None, restore: bool) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers import FIFOScheduler as _FIFO

    fifo: Any = _FIFO  # unannotated in Ray

    from raytrader.training.objectives import rl_trainable, window_trainable

    function = rl_trainable if config.target == "rl" else window_trainable
    trainable = tune.with_parameters(function, spec=config.model_dump(mode="json"))
    storage = str(Path(config.output_dir).resolve())
    path = Path(storage) / config.name
    if restore:  # run_search checked that there is a search to restore
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
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
            max_t=config.steps,
            grace_period=config.grace_period,
            reduction_factor=config.reduction_factor,
            time_attr=config.progress_attr,
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
    from ray.tune import CheckpointConfig, RunConfig

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
            name=config.name,
            storage_path=storage,
            callbacks=callbacks,
            verbose=0,
            # rl trials checkpoint the agent; the newest two are enough to resume from
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )


def _uri(config: SearchConfig) -> str:
    from raytrader.tracking import resolve_uri

    return resolve_uri(config.tracking_uri, Path(config.output_dir))


def run_search(config: SearchConfig, *, restore: bool = False) -> dict[str, Any]:
    """Run (or resume) a search; returns the best parameters, its score and the trial count."""
    from raytrader.strategies.runner import ensure_ray

    ensure_ray()
    path = Path(config.output_dir).resolve() / config.name
    if restore and not (path / "tuner.pkl").exists():
        raise ConfigError(f"nothing to restore at {path}")
    if not restore and path.exists():
        raise ConfigError(f"{path} exists: pass --restore to resume it or choose another name")
    # the parent run's id, kept next to the search so a restored search finishes the same run
    marker = path.with_name(f"{config.name}.mlflow_run")
    parent: str | None = None
    if config.mlflow and restore and marker.exists():
        parent = marker.read_text().strip()
    elif config.mlflow and not restore:
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
        path.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(parent)
    from raytrader.tracking import using_uri

    # Ray's MLflow callback sets the process-wide tracking URI; scope it to this search
    scope = using_uri(_uri(config)) if config.mlflow else contextlib.nullcontext()
    with scope:
        results = _tuner(config, parent, restore).fit()
    # only trials that reached the last window/iteration compete: one ASHA stopped early reports
    # a mean over fewer windows (or a less trained agent), which is not the objective
    attr = config.progress_attr
    complete = [r for r in results if r.metrics and r.metrics.get(attr) == config.steps]
    if not complete:
        raise ConfigError(
            f"search {config.name!r}: no trial reached {attr} {config.steps}"
            + _first_error(results)
        )
    valid = [r for r in complete if "invalid" not in r.metrics]
    if not valid:
        reason = complete[0].metrics["invalid"]
        raise ConfigError(f"search {config.name!r}: every trial was invalid, e.g. {reason}")
    best = max(valid, key=lambda r: float(r.metrics["sharpe"]))
    params = {k: best.config[k] for k in config.space}
    summary: dict[str, Any] = {
        "best_params": params,
        "best_sharpe": float(best.metrics["sharpe"]),
        "best_config": config.final_config(params),
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
        if config.register_as is not None:
            summary["registered_version"] = _register_rule(config, params, parent)
        client.set_terminated(parent, "FINISHED")
    return summary


def _register_rule(config: SearchConfig, sampled: dict[str, Any], run_id: str) -> str:
    from raytrader.data.sources import load_bars
    from raytrader.registry import RuleStrategyModel, data_range, register_model, serving_example

    data = config.data or "goog"
    bars = load_bars(data)
    return register_model(
        RuleStrategyModel(config.strategy, config.target_config(sampled)),
        name=str(config.register_as),
        kind="rule",
        input_example=serving_example(bars),
        tags={"raytrader.data": data_range(data, bars)},
        tracking_uri=config.tracking_uri,
        root=config.output_dir,
        run_id=run_id,
    )


def _first_error(results: Any) -> str:
    errors = list(results.errors)
    return f"; first trial error: {str(errors[0])[-500:]}" if errors else ""


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
