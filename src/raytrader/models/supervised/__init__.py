"""Supervised analyst/tactician classifiers of the forward-return sign, validated walk-forward with
purging and an embargo, trained in parallel as Ray tasks, backtested through the simulation kernel.

Labels: :mod:`raytrader.models.supervised.labels`; folds: :mod:`raytrader.models.supervised.walkforward`;
configs, training and targets: :mod:`raytrader.models.supervised.model`.
"""

from raytrader.models.supervised.labels import (
    NO_END,
    Labels,
    fixed_horizon_labels,
    rolling_volatility,
    triple_barrier_labels,
)
from raytrader.models.supervised.model import (
    DEFAULT_DATA,
    DEFAULT_PARAMS,
    FEATURE_NAMES,
    ClassifierConfig,
    Dataset,
    FixedHorizonLabel,
    FoldResult,
    LabelConfig,
    TrainedModel,
    TrainResult,
    TripleBarrierLabel,
    build_dataset,
    classification_metrics,
    cross_validate,
    fit_model,
    make_labels,
    make_pipeline,
    standard_configs,
    targets_from_proba,
    train,
    train_many,
)
from raytrader.models.supervised.walkforward import (
    Fold,
    FoldLeakError,
    WalkForwardConfig,
    check_folds,
    walk_forward_folds,
)

__all__ = [
    "DEFAULT_DATA",
    "DEFAULT_PARAMS",
    "FEATURE_NAMES",
    "NO_END",
    "ClassifierConfig",
    "Dataset",
    "FixedHorizonLabel",
    "Fold",
    "FoldLeakError",
    "FoldResult",
    "LabelConfig",
    "Labels",
    "TrainResult",
    "TrainedModel",
    "TripleBarrierLabel",
    "WalkForwardConfig",
    "build_dataset",
    "check_folds",
    "classification_metrics",
    "cross_validate",
    "fit_model",
    "fixed_horizon_labels",
    "make_labels",
    "make_pipeline",
    "rolling_volatility",
    "standard_configs",
    "targets_from_proba",
    "train",
    "train_many",
    "triple_barrier_labels",
    "walk_forward_folds",
]
