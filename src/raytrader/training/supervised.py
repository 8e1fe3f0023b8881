"""The ``train_supervised`` pipeline: several analyst/tactician configs trained in parallel as Ray
tasks, each validated walk-forward, tracked in MLflow and optionally registered as a pyfunc.

MLflow (``mlflow: true``, the default): one run per model in the experiment
``raytrader-supervised`` with the config as parameters (dotted paths), every fold's metrics as a
series (step = fold, one batched call), their mean and std, the out-of-sample backtest's metrics,
and artifacts: ``config.json``, ``folds.json`` (fold geometry and metrics), ``importance.json`` and
``oos_report/`` (equity/drawdown and returns plots, trades CSV, metrics). Tags name the feature
service and the data range. With ``to_registry`` the pyfunc is logged into that same run and
registered as ``<registry_prefix><model name>``.

``python -m raytrader.training.supervised --config models.yaml`` prints one JSON line per model
(fold metrics mean/std, out-of-sample backtest) and a final summary line.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from raytrader import wiring
from raytrader.config import StrictConfig
from raytrader.models.supervised import ClassifierConfig, standard_configs

EXPERIMENT = "raytrader-supervised"


class SupervisedRunConfig(StrictConfig):
    """Which models to train (default: the four analysts and the 1m tactician)."""

    models: tuple[ClassifierConfig, ...] = Field(default_factory=lambda: tuple(standard_configs()))
    #: one MLflow run per model (the stack's server, else SQLite under output_dir)
    mlflow: bool = True
    #: also register each model (``<prefix><model name>``) as a pyfunc (needs mlflow)
    to_registry: bool = False
    registry_prefix: str = "supervised-"
    output_dir: str = "runs/supervised"
    tracking_uri: str | None = None
    #: write each model's run (fold metrics, config) and its out-of-sample backtest (trades) to
    #: the experiment store (RAYTRADER_DB_URL)
    record: bool = True

    @model_validator(mode="after")
    def _check(self) -> SupervisedRunConfig:
        if self.to_registry and not self.mlflow:
            raise ValueError("to_registry needs mlflow: true (the model is logged into its run)")
        names = [m.display for m in self.models]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"model names must be unique, {doubled} repeat: set name")
        return self


def run(
    config: SupervisedRunConfig, *, on_model: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Train every model; one summary row each (in config order). ``on_model`` sees each row as
    its model finishes and is tracked."""
    from raytrader.models.supervised import train_many

    rows: dict[int, dict[str, Any]] = {}

    def finished(i: int, result: Any) -> None:
        rows[i] = _finish(config, config.models[i], result)
        if on_model is not None:
            on_model(rows[i])

    train_many(list(config.models), on_result=finished)
    return [rows[i] for i in range(len(config.models))]


def _finish(config: SupervisedRunConfig, cfg: ClassifierConfig, result: Any) -> dict[str, Any]:
    import numpy as np

    from raytrader.data.sources import load_bars

    bars = load_bars(cfg.dataset)
    oos = result.backtest_oos(bars)
    row: dict[str, Any] = {
        "model": cfg.display,
        "samples": result.n_samples,
        "folds": len(result.folds),
        **{f"{k}_mean": v["mean"] for k, v in result.summary.items()},
        **{f"{k}_std": v["std"] for k, v in result.summary.items()},
        "oos_sharpe": float(oos.metrics.get("sharpe", np.nan)),
        "oos_total_return": float(oos.metrics.get("total_return", np.nan)),
    }
    if config.mlflow:
        row["mlflow_run"] = _track(config, cfg, result, oos, bars, row)
        if config.to_registry and result.model is not None:
            row["registered_version"] = _register(config, cfg, result, bars, row["mlflow_run"])
    if config.record:
        row["store_run_id"] = _record(config, cfg, oos, bars, row)
    return row


def _record(
    config: SupervisedRunConfig, cfg: ClassifierConfig, oos: Any, bars: Any, row: dict[str, Any]
) -> int | None:
    """The model's run in the experiment store, with its out-of-sample backtest."""
    from raytrader.backtest.record import backtest_record
    from raytrader.db.store import ExperimentStore, RunSpec

    store = ExperimentStore.configured()
    if store is None:
        return None
    spec = RunSpec.for_bars(
        bars,
        key=f"supervised:{Path(config.output_dir).resolve()}:{cfg.display}",
        kind="supervised",
        what=cfg.display,
        config=cfg.model_dump(mode="json"),
        data=cfg.dataset,
        mlflow_run_id=row.get("mlflow_run"),
    )
    try:
        run_id = store.start_run(spec)
        try:
            store.record_backtest(backtest_record(oos, cfg.dataset, run_key=spec.key))
        except BaseException as exc:
            store.finish_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        metrics = {k: v for k, v in row.items() if isinstance(v, int | float)}
        store.finish_run(run_id, metrics=metrics)
        return run_id
    finally:
        store.close()


def _track(
    config: SupervisedRunConfig,
    cfg: ClassifierConfig,
    result: Any,
    oos: Any,
    bars: Any,
    row: dict[str, Any],
) -> str:
    import math

    from mlflow.entities import Metric, Param

    from raytrader.backtest.report import write_report
    from raytrader.contract import FEATURE_SERVICE
    from raytrader.features.matrix import resolve_source
    from raytrader.registry import data_range
    from raytrader.tracking import experiment_id, flat_params

    out = Path(config.output_dir)
    uri, client = wiring.mlflow(config.tracking_uri, out)
    exp = experiment_id(client, EXPERIMENT, out, uri)
    run_id: str = client.create_run(
        exp,
        run_name=cfg.display,
        tags={
            "raytrader.kind": "supervised",
            "raytrader.feature_service": FEATURE_SERVICE,
            "raytrader.data": data_range(cfg.dataset, bars),
            "raytrader.model": cfg.display,
            "raytrader.feature_source": resolve_source(cfg.feature_source),
        },
    ).info.run_id
    status = "FAILED"
    try:
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, fold.index)
            for fold in result.folds
            for k, v in fold.metrics.items()
            if math.isfinite(v)
        ]
        metrics += [
            Metric(k, float(v), now, 0)
            for k, v in row.items()
            if isinstance(v, float) and math.isfinite(v)
        ]
        params = [Param(k, v) for k, v in flat_params(cfg.model_dump(mode="json")).items()]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.log_dict(run_id, cfg.model_dump(mode="json"), "config.json")
        client.log_dict(run_id, result.describe(), "folds.json")
        client.log_dict(run_id, result.importance, "importance.json")
        with tempfile.TemporaryDirectory() as tmp:
            write_report(oos, tmp)
            client.log_artifacts(run_id, tmp, "oos_report")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def _register(
    config: SupervisedRunConfig, cfg: ClassifierConfig, result: Any, bars: Any, run_id: str
) -> str:
    from raytrader.registry import (
        SupervisedModel,
        data_range,
        register_model,
        serving_example,
        supervised_artifacts,
    )

    return register_model(
        SupervisedModel(),
        name=f"{config.registry_prefix}{cfg.display}",
        kind="supervised",
        input_example=serving_example(bars),
        artifacts=supervised_artifacts(result.model),
        tags={"raytrader.data": data_range(cfg.dataset, bars)},
        tracking_uri=config.tracking_uri,
        root=config.output_dir,
        run_id=run_id,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrader.training.supervised --config models.yaml``."""
    from raytrader.config import pipeline_main

    def rows(config: SupervisedRunConfig, args: Any) -> Iterator[dict[str, Any]]:
        out = run(config, on_model=lambda row: print(json.dumps(row), flush=True))
        yield {"models": len(out)}

    return pipeline_main("python -m raytrader.training.supervised", SupervisedRunConfig, rows, argv)


if __name__ == "__main__":
    # see raytrader.training.rl: run the imported module's main so Ray pickles by reference
    from raytrader.training.supervised import main as _main

    raise SystemExit(_main())
