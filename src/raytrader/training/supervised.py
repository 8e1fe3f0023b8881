"""The ``train_supervised`` pipeline: several analyst/tactician configs trained in parallel as Ray
tasks, each validated walk-forward, optionally registered in MLflow as a pyfunc.

``python -m raytrader.training.supervised --config models.yaml`` prints one JSON line per model
(fold metrics mean/std, out-of-sample backtest) and a final summary line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from raytrader.config import StrictConfig
from raytrader.models.supervised import ClassifierConfig, standard_configs


class SupervisedRunConfig(StrictConfig):
    """Which models to train (default: the four analysts and the 1m tactician)."""

    models: tuple[ClassifierConfig, ...] = Field(default_factory=lambda: tuple(standard_configs()))
    #: register each model (``<prefix><model name>``) and log its metrics to MLflow
    to_registry: bool = False
    registry_prefix: str = "supervised-"
    output_dir: str = "runs/supervised"
    tracking_uri: str | None = None


def run(config: SupervisedRunConfig) -> list[dict[str, Any]]:
    import numpy as np

    from raytrader.models.supervised import train_many

    results = train_many(list(config.models))
    rows = []
    for cfg, result in zip(config.models, results, strict=True):
        summary = result.summary
        oos = result.backtest_oos(result_bars(cfg)) if result.model is not None else None
        row: dict[str, Any] = {
            "model": cfg.display,
            "samples": result.n_samples,
            "folds": len(result.folds),
            **{f"{k}_mean": v["mean"] for k, v in summary.items()},
            **{f"{k}_std": v["std"] for k, v in summary.items()},
        }
        if oos is not None:
            row["oos_sharpe"] = float(oos.metrics.get("sharpe", np.nan))
            row["oos_total_return"] = float(oos.metrics.get("total_return", np.nan))
        if config.to_registry and result.model is not None:
            row["registered_version"] = _register(config, cfg, result, row)
        rows.append(row)
    return rows


def result_bars(cfg: ClassifierConfig) -> Any:
    from raytrader.data.sources import load_bars

    return load_bars(cfg.dataset)


def _register(
    config: SupervisedRunConfig, cfg: ClassifierConfig, result: Any, row: dict[str, Any]
) -> str:
    from raytrader.features.engine import compute_features
    from raytrader.registry import SupervisedModel, register_model, supervised_artifacts

    bars = result_bars(cfg)
    example = compute_features(bars).tail(50)
    return register_model(
        SupervisedModel(),
        name=f"{config.registry_prefix}{cfg.display}",
        kind="supervised",
        input_example=example,
        artifacts=supervised_artifacts(result.model),
        tags={
            "raytrader.data": f"{cfg.dataset} {bars.index[0].isoformat()}..{bars.index[-1].isoformat()}"
        },
        params={"config": json.dumps(cfg.model_dump(mode="json"))},
        metrics={k: v for k, v in row.items() if isinstance(v, float)},
        tracking_uri=config.tracking_uri,
        root=config.output_dir,
        experiment="raytrader-supervised",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrader.training.supervised --config models.yaml``."""
    from raytrader.training.configfile import pipeline_main

    def rows(config: SupervisedRunConfig, args: Any) -> Iterator[dict[str, Any]]:
        out = run(config)
        yield from out
        yield {"models": len(out)}

    return pipeline_main("python -m raytrader.training.supervised", SupervisedRunConfig, rows, argv)


if __name__ == "__main__":
    # see raytrader.training.rl: run the imported module's main so Ray pickles by reference
    from raytrader.training.supervised import main as _main

    raise SystemExit(_main())
