"""Hyperparameter search with Ray Tune: ASHA early stopping, Optuna (TPE) search, MLflow tracking,
and an honest report of what the search found.

The objective is the **validation Sharpe net of costs** (the kernel's equity, the pinned Sharpe of
:mod:`raytrader.backtest.metrics`) averaged over walk-forward validation windows. The series' usable
bars (after ``warmup_bars``) split into a training head (``train_fraction``; none for ``rule``, half
by default for ``supervised`` and ``rl``), ``folds`` consecutive validation windows (the *selection
range*), and a held-out tail (``holdout_fraction``) no trial sees
(:mod:`raytrader.training.search_config`). A window in which the config never trades is excluded
from the mean, never scored 0, and a trial that trades in no window cannot be selected
(:mod:`raytrader.training.objectives`, *No trades*).

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
window, so a poor trial stops after its first windows) and the RLlib iteration for ``rl``. Each
trial is logged to MLflow as a child run of one parent run per search (``mlflow.parentRunId``), with
its parameters and every report's metrics. ``Tuner.restore`` resumes an interrupted search from
``<output_dir>/<name>`` (``--restore``); an ``rl`` trial continues from its last Tune checkpoint
(every ``checkpoint_every`` iterations).

Trials
    ``completed``: ran every window (iteration) and traded in at least one: only these compete.
    ``stopped_early``: stopped by ASHA (or the time budget) before the last window. ``no_trades``:
    traded in none of the windows it ran. ``invalid``: parameters the target rejects (e.g.
    ``fast >= slow``). ``errors``: trials that raised.
Summary (:func:`run_search`)
    ``best_params`` / ``best_config``; ``best_validation_sharpe``: the selected trial's objective,
    the **maximum over the completed trials, so biased upward** (``best_sharpe`` is a deprecated
    alias); ``best_traded_windows`` of ``windows``; the trial counts; ``deflated_sharpe``: the
    Deflated Sharpe Ratio of the selected trial's per-bar validation returns against ``N`` = every
    trial that scored a window, ``V`` = the variance of their per-bar Sharpes
    (``trial_sharpe_variance``); ``holdout``: the selected config scored **once** on the held-out
    tail, next to buy-and-hold on the same bars with the same costs (an ``rl`` target uses the
    selected trial's final agent; ``skipped`` says why when there is nothing to score);
    ``selection`` / ``searched_bars`` / ``holdout`` bar positions (inclusive) and UTC timestamps.
MLflow
    The parent run gets the numbers as metrics (``best_validation_sharpe``,
    ``deflated_sharpe_ratio``, ``holdout_sharpe``, ``holdout_buy_and_hold_sharpe``, ...), the
    windows as ``raytrader.selection.*`` / ``raytrader.holdout.*`` tags and the whole summary as
    ``search_summary.json``. ``register_as`` (rule) tags the version the same way, with
    ``raytrader.data`` covering only the bars the selection read (never the holdout) and the
    numbers under ``raytrader.search.*``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raytrader import wiring
from raytrader.errors import ConfigError
from raytrader.training.objectives import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    holdout_evaluation,
    rl_trainable,
    search_range,
    window_trainable,
)
from raytrader.training.search_config import (
    RL_OWNED,
    Param,
    SearchConfig,
    fold_windows,
    holdout_window,
)


def _tuner(config: SearchConfig, parent_run: str | None, restore: bool) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers import FIFOScheduler as _FIFO

    fifo: Any = _FIFO  # unannotated in Ray

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

    # verbose=0 is meant as quiet, but Ray's newer console output prints its experiment table and
    # paths with print() whatever the verbosity; the classic reporter honours it (our summary
    # and MLflow say what the search did)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
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


@dataclass
class TrialTally:
    """The trials of a finished search by outcome (module docstring: *Trials*)."""

    completed: list[Any] = field(default_factory=list)
    stopped_early: list[Any] = field(default_factory=list)
    no_trades: list[Any] = field(default_factory=list)
    invalid: list[Any] = field(default_factory=list)
    errored: list[Any] = field(default_factory=list)
    unreported: list[Any] = field(default_factory=list)

    @property
    def scored(self) -> list[Any]:
        """Trials that scored at least one window: the ``N`` of the Deflated Sharpe Ratio."""
        return [*self.completed, *self.stopped_early, *self.no_trades]

    def counts(self) -> dict[str, int]:
        return {
            "completed": len(self.completed),
            "stopped_early": len(self.stopped_early),
            "no_trades": len(self.no_trades),
            "invalid": len(self.invalid),
            "errors": len(self.errored),
        }


def tally_trials(results: Sequence[Any], config: SearchConfig) -> TrialTally:
    """Sort Tune results (anything with ``metrics`` and ``error``) by outcome. Only ``completed``
    trials (every window or iteration run, at least one window traded, valid parameters) can be
    selected; a trial that traded in none of the windows it ran is ``no_trades`` wherever it
    stopped."""
    tally = TrialTally()
    for r in results:
        metrics = r.metrics or {}
        if getattr(r, "error", None) is not None:
            tally.errored.append(r)
        elif "invalid" in metrics:
            tally.invalid.append(r)
        elif config.progress_attr not in metrics:
            tally.unreported.append(r)
        elif int(metrics.get("traded_windows", 0)) == 0:
            tally.no_trades.append(r)
        elif metrics[config.progress_attr] == config.steps:
            tally.completed.append(r)
        else:
            tally.stopped_early.append(r)
    return tally


def select_best(tally: TrialTally, config: SearchConfig, first_error: str = "") -> Any:
    """The completed trial with the highest objective; a clear error when there is none."""
    if tally.completed:
        return max(tally.completed, key=lambda r: float(r.metrics["sharpe"]))
    if tally.no_trades:
        raise ConfigError(
            f"search {config.name!r}: no trial that ran to the end ever traded "
            f"({len(tally.no_trades)} never traded in any window); a config that does not trade "
            "cannot be selected"
        )
    if tally.invalid and not tally.stopped_early:
        reason = tally.invalid[0].metrics["invalid"]
        raise ConfigError(f"search {config.name!r}: every trial was invalid, e.g. {reason}")
    raise ConfigError(
        f"search {config.name!r}: no trial reached {config.progress_attr} {config.steps}"
        + first_error
    )


def deflated_sharpe(best: Any, tally: TrialTally, periods_per_year: float) -> dict[str, Any]:
    """The Deflated Sharpe Ratio of the selected trial (:mod:`raytrader.training.objectives`):
    its per-bar validation Sharpe against the expected maximum of ``N`` = every trial that scored
    a window (completed, stopped early or never trading), with ``V`` the variance (ddof=1) of the
    per-bar Sharpes of the trials that traded."""
    sharpes = [
        float(r.metrics["bar_sharpe"])
        for r in [*tally.completed, *tally.stopped_early]
        if math.isfinite(float(r.metrics.get("bar_sharpe", math.nan)))
    ]
    variance = float(np.var(sharpes, ddof=1)) if len(sharpes) >= 2 else 0.0
    n_trials = len(tally.scored)
    m = best.metrics
    sharpe = float(m.get("bar_sharpe", math.nan))
    n_obs = int(m.get("bar_count", 0))
    skew, kurt = float(m.get("bar_skewness", math.nan)), float(m.get("bar_kurtosis", math.nan))
    benchmark = expected_max_sharpe(variance, n_trials)
    root = math.sqrt(periods_per_year)
    return {
        "dsr": deflated_sharpe_ratio(sharpe, variance, n_trials, n_obs, skew, kurt),
        "sharpe_per_bar": sharpe,
        "sharpe_annualized": sharpe * root,
        "expected_max_sharpe_per_bar": benchmark,
        "expected_max_sharpe_annualized": benchmark * root,
        "trials": n_trials,
        "trial_sharpe_variance": variance,
        "trial_sharpe_std_annualized": math.sqrt(variance) * root,
        "trials_with_sharpe": len(sharpes),
        "observations": n_obs,
        "skewness": skew,
        "kurtosis": kurt,
    }


def run_search(config: SearchConfig, *, restore: bool = False) -> dict[str, Any]:
    """Run (or resume) a search, select the best completed trial, score it once on the holdout
    next to buy-and-hold, and deflate its Sharpe; returns the summary (module docstring)."""
    from raytrader.strategies.runner import ensure_ray

    ensure_ray()
    started = time.monotonic()
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
        from raytrader.tracking import experiment_id

        client = wiring.mlflow_client(_uri(config))
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
    tally = tally_trials(list(results), config)
    best = select_best(tally, config, _first_error(results))
    params = {k: best.config[k] for k in config.space}
    where = search_range(config, params)
    checkpoint = None
    if config.target == "rl" and best.checkpoint is not None:
        checkpoint = best.checkpoint.path
    # the one look at the held-out tail: the selected config only, after the selection
    holdout = holdout_evaluation(config, params, checkpoint)
    if config.target == "rl" and "skipped" not in holdout:
        holdout["note"] = "the selected trial's final agent, trained on the training head only"
    validation = float(best.metrics["sharpe"])
    summary: dict[str, Any] = {
        "best_params": params,
        "best_validation_sharpe": validation,
        "best_validation_sharpe_note": (
            f"mean annualized Sharpe over the {int(best.metrics['traded_windows'])} of "
            f"{len(where.windows)} validation windows the best config traded in; the maximum over "
            f"{len(tally.completed)} completed trials, so biased upward"
        ),
        "best_traded_windows": int(best.metrics["traded_windows"]),
        "windows": len(where.windows),
        "best_config": config.final_config(params),
        "trials": len(results),
        **tally.counts(),
        "deflated_sharpe": deflated_sharpe(best, tally, where.periods_per_year),
        "holdout": holdout,
        **where.describe(),
        "path": str(path),
    }
    summary["trial_sharpe_variance"] = summary["deflated_sharpe"]["trial_sharpe_variance"]
    # deprecated alias of best_validation_sharpe for callers that still read it
    summary["best_sharpe"] = validation
    if parent is not None:
        client = wiring.mlflow_client(_uri(config))
        _log_parent(client, parent, summary)
        if config.register_as is not None:
            summary["registered_version"] = _register_rule(config, params, parent, summary)
        client.set_terminated(parent, "FINISHED")
    summary["store_optimization_id"] = record_search(
        config, list(results), tally, best, summary, parent, time.monotonic() - started
    )
    return summary


def _window_scores(result: Any, config: SearchConfig) -> list[float | None]:
    """A trial's Sharpe per validation window (``None``: it did not trade there, or never got
    there): rule/supervised report one window at a time, rl every window after each iteration."""
    if config.target == "rl":
        m = result.metrics or {}
        return [m.get(f"fold_{i + 1}_sharpe") for i in range(config.folds)]
    frame = getattr(result, "metrics_dataframe", None)
    out: list[float | None] = [None] * config.folds
    if frame is None or "fold" not in frame:
        return out
    for fold, value in zip(
        frame["fold"], frame.get("fold_sharpe", [None] * len(frame)), strict=True
    ):
        if 1 <= int(fold) <= config.folds and value is not None and math.isfinite(float(value)):
            out[int(fold) - 1] = float(value)
    return out


def record_search(
    config: SearchConfig,
    results: Sequence[Any],
    tally: TrialTally,
    best: Any,
    summary: Mapping[str, Any],
    parent_run: str | None,
    duration_s: float,
) -> int | None:
    """Write the search and every trial to the experiment store (the same key on a restored
    search: its trials are updated, not duplicated); the optimization's id, ``None`` without a
    store."""
    from raytrader.db.store import ExperimentStore, OptimizationRecord, TrialRecord

    store = ExperimentStore.configured()
    if store is None:
        return None
    outcome = {
        **{id(r): "completed" for r in tally.completed},
        **{id(r): "stopped_early" for r in tally.stopped_early},
        **{id(r): "no_trades" for r in tally.no_trades},
        **{id(r): "invalid" for r in tally.invalid},
        **{id(r): "error" for r in tally.errored},
    }
    trials = []
    for i, r in enumerate(results):
        m = r.metrics or {}
        status = outcome.get(id(r), "unreported")
        trials.append(
            TrialRecord(
                key=str(m.get("trial_id") or f"trial-{i}"),
                params={k: (r.config or {}).get(k) for k in config.space},
                score=float(m["sharpe"]) if status in ("completed", "stopped_early") else None,
                status=status,
                window_scores=_window_scores(r, config),
                early_stopped=status == "stopped_early",
                iterations=int(m.get("training_iteration", 0) or 0),
                duration_s=m.get("time_total_s"),
            )
        )
    record = OptimizationRecord(
        key=f"search:{Path(str(summary['path'])).resolve()}",
        name=config.name,
        target=config.target,
        metric="validation_sharpe",
        mode="max",
        config=config.model_dump(mode="json"),
        trials=trials,
        best_trial=str((best.metrics or {}).get("trial_id", "")) or None,
        best_score=float(summary["best_validation_sharpe"]),
        best_params=dict(summary["best_params"]),
        mlflow_run_id=parent_run,
        duration_s=duration_s,
    )
    try:
        return store.record_optimization(record)
    finally:
        store.close()


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def _summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The parent run's metrics (and the registered version's ``raytrader.*`` numbers)."""
    dsr = summary["deflated_sharpe"]
    values: dict[str, Any] = {
        "best_validation_sharpe": summary["best_validation_sharpe"],
        "best_traded_windows": summary["best_traded_windows"],
        "trials": summary["trials"],
        **{f"trials_{k}": v for k, v in summary.items() if k in _COUNTS},
        "deflated_sharpe_ratio": dsr["dsr"],
        "expected_max_sharpe_per_bar": dsr["expected_max_sharpe_per_bar"],
        "trial_sharpe_variance": dsr["trial_sharpe_variance"],
        "best_sharpe_per_bar": dsr["sharpe_per_bar"],
    }
    holdout = summary["holdout"]
    if "skipped" not in holdout:
        for side, prefix in (("best", "holdout"), ("buy_and_hold", "holdout_buy_and_hold")):
            for key in _HOLDOUT_METRICS:
                values[f"{prefix}_{key}"] = holdout[side][key]
    return _finite(values)


_COUNTS = ("completed", "stopped_early", "no_trades", "invalid", "errors")
_HOLDOUT_METRICS = ("sharpe", "total_return", "max_drawdown", "num_trades", "exposure")


def _window_tags(summary: Mapping[str, Any]) -> dict[str, str]:
    """Tags naming the selection range and the holdout (bars, inclusive, and UTC timestamps)."""
    tags: dict[str, str] = {}
    spans = {"selection": summary["selection"], "holdout": summary["holdout"]}
    for name, span in spans.items():
        if span is None or "skipped" in span:
            tags[f"raytrader.{name}"] = str((span or {}).get("skipped", "none"))
            continue
        for key in ("start_bar", "end_bar", "start", "end"):
            tags[f"raytrader.{name}.{key}"] = str(span[key])
    return tags


def _log_parent(client: Any, run_id: str, summary: Mapping[str, Any]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in _summary_metrics(summary).items()]
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, "best_params", json.dumps(summary["best_params"]))
    for key, value in _window_tags(summary).items():
        client.set_tag(run_id, key, value)
    client.log_dict(run_id, dict(summary), "search_summary.json")


def _tag(value: float) -> str:
    """A number as a tag: counts without a trailing ``.0``, other values exactly (``repr``)."""
    return str(int(value)) if value.is_integer() else repr(value)


def _register_rule(
    config: SearchConfig, sampled: dict[str, Any], run_id: str, summary: Mapping[str, Any]
) -> str:
    """Register the selected rule; the version's tags name the bars the selection read
    (``raytrader.data``: up to the last validation bar, never the holdout), the selection range,
    the holdout, and the search's honest numbers (``raytrader.search.*``)."""
    from raytrader.data.sources import load_bars
    from raytrader.registry import RuleStrategyModel, data_range, register_model, serving_example

    data = config.dataset
    bars = load_bars(data)
    searched = summary["searched_bars"]
    tags = {
        "raytrader.data": data_range(data, bars.frame.iloc[: int(searched["end_bar"]) + 1]),
        **_window_tags(summary),
        **{f"raytrader.search.{k}": _tag(v) for k, v in _summary_metrics(summary).items()},
    }
    return register_model(
        RuleStrategyModel(config.strategy, config.target_config(sampled)),
        name=str(config.register_as),
        kind="rule",
        input_example=serving_example(bars),
        tags=tags,
        tracking_uri=config.tracking_uri,
        root=config.output_dir,
        run_id=run_id,
    )


def _first_error(results: Any) -> str:
    errors = list(results.errors)
    return f"; first trial error: {str(errors[0])[-500:]}" if errors else ""


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrader.training.tune --config search.yaml [--restore]``."""
    from raytrader.config import pipeline_main

    def run(config: SearchConfig, args: Any) -> Iterator[dict[str, Any]]:
        yield run_search(config, restore=args.restore)

    flags = [("restore", "resume an interrupted search")]
    return pipeline_main("python -m raytrader.training.tune", SearchConfig, run, argv, flags)


__all__ = [  # SearchConfig, Param and the window helpers live in search_config; imported from here
    "RL_OWNED",
    "Param",
    "SearchConfig",
    "TrialTally",
    "deflated_sharpe",
    "fold_windows",
    "holdout_window",
    "main",
    "run_search",
    "select_best",
    "tally_trials",
]


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: Ray pickles functions by reference
    # to their module, and by value (pydantic classes included, which fails) when in __main__
    from raytrader.training.tune import main as _main

    raise SystemExit(_main())
