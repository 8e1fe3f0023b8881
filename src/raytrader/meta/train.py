"""``raytrader meta train``: which performance predictor to use, decided out of sample, on Ray,
tracked in MLflow.

Every (predictor, seed) is one Ray task: the predictor walked forward over the rows
(:func:`raytrader.meta.predictors.walk_forward`: refits on labels closed at each refit bar) and its
out-of-sample predictions scored (rank IC, Newey–West t, top-1 hit rate). Deterministic predictors
(``ewma``, ``table``, ``ridge``, and ``hgb``: without early stopping or subsampling its seed
changes nothing) run one seed, ``mlp`` ``seeds``; a kind's score is the mean over its seeds, with
their standard deviation.

The choice: the MLP (the design's neural predictor) is the default only if its mean rank IC is at
least the best baseline's; otherwise the best baseline is, and the summary says so. MLflow gets a
parent run (the config, each kind's mean IC, the choice) and a child run per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from raytrader.config import StrictConfig
from raytrader.data import Bars
from raytrader.errors import ConfigError
from raytrader.meta.predictors import KINDS, Kind, score_predictions, walk_forward

DETERMINISTIC = frozenset({"ewma", "table", "ridge", "hgb"})
NEURAL = "mlp"


class PredictorTraining(StrictConfig):
    predictors: tuple[Kind, ...] = KINDS
    seeds: int = Field(5, ge=1)
    refit_bars: int = Field(63, ge=1)
    min_rows: int = Field(200, ge=1)


@dataclass(frozen=True)
class KindScore:
    kind: str
    ic: float
    ic_std: float  # across seeds
    ic_t: float
    hit_rate: float
    seeds: int


def _task(
    rows: pd.DataFrame, kind: str, seed: int, refit_bars: int, min_rows: int, lags: int
) -> dict[str, Any]:
    predictions = walk_forward(rows, kind, refit_bars, min_rows, seed)
    scored = np.isfinite(predictions)
    score = score_predictions(rows[scored], predictions[scored], kind, lags)
    return {
        "kind": kind,
        "seed": seed,
        "ic": score.ic,
        "ic_t": score.ic_t,
        "hit_rate": score.hit_rate,
        "bars": score.bars,
    }


def compare_predictors(
    rows: pd.DataFrame,
    config: PredictorTraining,
    horizon: int,
    *,
    address: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[KindScore], list[dict[str, Any]]]:
    """Every (kind, seed) as a Ray task (1 CPU); the per-kind scores and every task's result."""
    from raytrader import wiring

    jobs = [
        (kind, seed)
        for kind in config.predictors
        for seed in range(1 if kind in DETERMINISTIC else config.seeds)
    ]
    rows_ref = wiring.ray(address).put(rows)
    ordered = wiring.ray_tasks(
        _task,
        [
            (rows_ref, kind, seed, config.refit_bars, config.min_rows, horizon)
            for kind, seed in jobs
        ],
        lambda i: f"predictor {jobs[i][0]} (seed {jobs[i][1]})",
        address=address,
        on_result=(lambda _, result: on_result(result)) if on_result is not None else None,
    )
    scores = []
    for kind in config.predictors:
        mine = [r for r in ordered if r["kind"] == kind]
        ics = np.array([r["ic"] for r in mine], dtype=np.float64)
        scores.append(
            KindScore(
                kind=kind,
                ic=float(np.nanmean(ics)) if np.isfinite(ics).any() else float("nan"),
                ic_std=float(np.nanstd(ics)) if len(ics) > 1 else 0.0,
                ic_t=float(np.nanmean([r["ic_t"] for r in mine])),
                hit_rate=float(np.nanmean([r["hit_rate"] for r in mine])),
                seeds=len(mine),
            )
        )
    return scores, ordered


def choose(scores: list[KindScore]) -> tuple[str, str]:
    """The predictor to use and why (module docstring's rule)."""
    by_kind = {s.kind: s for s in scores if np.isfinite(s.ic)}
    if not by_kind:
        raise ConfigError("no predictor could be scored: too few rows whose labels had closed")
    baselines = {k: s for k, s in by_kind.items() if k != NEURAL}
    best = max(baselines.values(), key=lambda s: s.ic) if baselines else None
    neural = by_kind.get(NEURAL)
    if neural is not None and (best is None or neural.ic >= best.ic):
        reason = f"mlp's rank IC {neural.ic:.4f} >= the best baseline's" + (
            f" ({best.kind}, {best.ic:.4f})" if best else ""
        )
        return NEURAL, reason
    assert best is not None  # noqa: S101 - by_kind is not empty and has no mlp
    if neural is None:
        return best.kind, f"{best.kind} has the best rank IC ({best.ic:.4f}); mlp was not tried"
    return (
        best.kind,
        f"{best.kind}'s rank IC {best.ic:.4f} beats mlp's {neural.ic:.4f}: the baseline is the default",
    )


def log_training(
    bars: Bars,
    config: StrictConfig,
    scores: list[KindScore],
    tasks: list[dict[str, Any]],
    chosen: tuple[str, str],
    *,
    tracking_uri: str | None = None,
    root: str = "runs",
    experiment: str = "raytrader-meta",
) -> str:
    """A parent run (the config, each kind's mean IC, the choice) and one child run per task;
    returns the parent's run id."""
    from raytrader.tracking import flat_params, log_run

    metrics = {f"{s.kind}.ic": s.ic for s in scores} | {f"{s.kind}.ic_t": s.ic_t for s in scores}
    _, parent = log_run(
        experiment=experiment,
        run_name=f"meta-train {bars.symbol}",
        params=flat_params(config.model_dump(mode="json")),
        metrics=metrics,
        tags={"raytrader.meta.predictor": chosen[0], "raytrader.meta.reason": chosen[1][:500]},
        tracking_uri=tracking_uri,
        root=root,
    )
    for task in tasks:
        log_run(
            experiment=experiment,
            run_name=f"{task['kind']} seed {task['seed']}",
            params={"kind": task["kind"], "seed": task["seed"]},
            metrics={k: float(task[k]) for k in ("ic", "ic_t", "hit_rate", "bars")},
            tags={"mlflow.parentRunId": parent},
            tracking_uri=tracking_uri,
            root=root,
        )
    return parent
