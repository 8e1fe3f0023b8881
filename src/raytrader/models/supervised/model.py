"""Supervised "analyst" and "tactician" classifiers: predict the sign of a forward return, trade it.

A :class:`ClassifierConfig` names a role (``analyst`` on 1h, 15m, 5m or 1m bars; ``tactician`` on 1m
bars only), a label (:class:`FixedHorizonLabel` or :class:`TripleBarrierLabel`, defined in
:mod:`raytrader.models.supervised.labels`), a scikit-learn estimator and a seed.

Pipeline
    ``StandardScaler`` then ``RandomForestClassifier`` or ``HistGradientBoostingClassifier``, with
    :data:`DEFAULT_PARAMS` overridden by ``params`` (``random_state`` is always ``seed``). Inputs are
    the ``bar_features_v1`` columns of :func:`raytrader.features.compute_features` (all 70, or the
    ``features`` named); rows before warm-up are dropped, NaNs after it (a ratio over a zero range)
    are left to the estimators, which route missing values natively.
Samples
    bar ``i`` is a sample when it is warm and has a label; its class is ``y_i`` in {-1, 0, +1}. By
    default (``labels.entry="open"``) the label is the return a position decided at bar ``i``'s
    close actually earns in the kernel: entered at bar ``i+1``'s open, exited at the open ``h``
    bars later; ``entry="close"`` keeps the close-to-close label.
Validation (:func:`cross_validate`)
    the folds of :mod:`raytrader.models.supervised.walkforward`, purged with each label's end bar.
    Per fold: ``accuracy``; ``precision``, ``recall``, ``f1`` macro-averaged over the classes present in
    the fold's true or predicted labels (``zero_division=0``); ``majority_baseline`` = accuracy of
    always predicting the training fold's most frequent class. The predicted class is the one of
    highest probability. :attr:`TrainResult.summary` gives mean and population std (ddof=0) over folds.
Feature importance
    ``importance="permutation"``: mean drop of test-fold accuracy when one feature column is shuffled
    (:func:`sklearn.inspection.permutation_importance`, ``importance_repeats`` shuffles seeded with
    ``seed``); ``"impurity"``: the random forest's mean decrease in impurity on the training fold
    (``feature_importances_``, random forest only); ``"none"``. Averaged over folds.
Targets (:func:`targets_from_proba`)
    with ``p_up = P(y=+1)``, ``p_down = P(y=-1)``: ``+1`` if ``p_up >= threshold`` and
    ``p_up > p_down``, ``-1`` if ``p_down >= threshold`` and ``p_down > p_up`` (``0`` if ``long_only``),
    else ``0``; rows before warm-up are ``0``. ``confidence = max(p_up, p_down)``. A target is decided
    at the bar's close; the simulation kernel fills it at the next bar's open, like every strategy's.

Data: ``data`` names the bars for :func:`raytrader.data.load_bars`; by default (:data:`DEFAULT_DATA`)
1h uses the real bundled EURUSD hourly bars and 15m/5m/1m use the seeded synthetic generator
(:mod:`raytrader.data.synthetic`), since no real minute data ships offline.

Same config, same bars → identical metrics, importances and predictions (estimators are seeded and
run single-threaded by default). :func:`train_many` trains configs in parallel as Ray tasks and
returns what :func:`train` returns for each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from raytrader.backtest.engine import BacktestResult, run_backtest
from raytrader.config import StrictConfig
from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.features import BAR_FEATURES_V1, WARM_COLUMN, compute_features
from raytrader.models.supervised.labels import (
    Entry,
    Labels,
    fixed_horizon_labels,
    triple_barrier_labels,
)
from raytrader.models.supervised.walkforward import Fold, WalkForwardConfig, walk_forward_folds
from raytrader.sim import SimConfig

Estimator = Literal["random_forest", "hist_gradient_boosting"]
ModelTimeframe = Literal["1h", "15m", "5m", "1m"]

FEATURE_NAMES: tuple[str, ...] = tuple(s.name for s in BAR_FEATURES_V1.features)

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 100, "max_depth": 6, "min_samples_leaf": 20, "n_jobs": 1},
    "hist_gradient_boosting": {
        "max_iter": 100,
        "learning_rate": 0.05,
        "max_depth": 4,
        "early_stopping": False,
    },
}
"""Estimator parameters unless ``params`` overrides them."""

DEFAULT_DATA: dict[str, str] = {
    "1h": "eurusd",
    "15m": "synthetic:n_bars=20000,timeframe=15m,seed=1,symbol=SYN",
    "5m": "synthetic:n_bars=20000,timeframe=5m,seed=1,symbol=SYN",
    "1m": "synthetic:n_bars=20000,timeframe=1m,seed=1,symbol=SYN",
}
"""Bars each timeframe trains on unless ``data`` is given: real EURUSD hourly, synthetic otherwise."""


class FixedHorizonLabel(StrictConfig):
    """Sign of the ``horizon``-bar forward return, 0 within ``±min_return``."""

    kind: Literal["fixed_horizon"] = "fixed_horizon"
    horizon: int = Field(default=12, ge=1, le=100_000)
    min_return: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    #: open: from the next bar's open to the open h bars later (the kernel's fills); close: c→c
    entry: Entry = "open"


class TripleBarrierLabel(StrictConfig):
    """First barrier touched within ``horizon`` bars; barriers at ``upper``/``lower`` x rolling vol."""

    kind: Literal["triple_barrier"] = "triple_barrier"
    horizon: int = Field(default=12, ge=1, le=100_000)
    upper: float = Field(default=2.0, gt=0.0, allow_inf_nan=False)
    lower: float = Field(default=2.0, gt=0.0, allow_inf_nan=False)
    vol_window: int = Field(default=20, ge=2, le=100_000)
    vertical: Literal["sign", "zero"] = "sign"
    #: open: enter at the next bar's open (the kernel's fill), exit h bars later; close: c→c
    entry: Entry = "open"


LabelConfig = Annotated[FixedHorizonLabel | TripleBarrierLabel, Field(discriminator="kind")]


def make_labels(
    prices: Bars | pd.DataFrame, config: FixedHorizonLabel | TripleBarrierLabel
) -> Labels:
    """The labels ``config`` defines for bars (or a frame with ``open`` and ``close`` columns)."""
    frame = prices.frame if isinstance(prices, Bars) else prices
    close, open_ = frame["close"].to_numpy(np.float64), frame["open"].to_numpy(np.float64)
    if isinstance(config, FixedHorizonLabel):
        return fixed_horizon_labels(
            close, config.horizon, open_=open_, entry=config.entry, min_return=config.min_return
        )
    return triple_barrier_labels(
        close,
        config.horizon,
        open_=open_,
        entry=config.entry,
        upper=config.upper,
        lower=config.lower,
        vol_window=config.vol_window,
        vertical=config.vertical,
    )


class ClassifierConfig(StrictConfig):
    """One analyst or tactician model (module docstring)."""

    name: str | None = None
    role: Literal["analyst", "tactician"] = "analyst"
    timeframe: ModelTimeframe = "1h"
    data: str | None = None
    labels: LabelConfig = Field(default_factory=FixedHorizonLabel)
    estimator: Estimator = "random_forest"
    params: dict[str, Any] = Field(default_factory=dict)
    features: tuple[str, ...] | None = None
    #: where features come from: auto (Feast when the stack env is exported) | batch | feast
    feature_source: Literal["auto", "batch", "feast"] = "auto"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    threshold: float = Field(default=0.55, ge=0.0, le=1.0)
    long_only: bool = False
    validation: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    importance: Literal["permutation", "impurity", "none"] = "permutation"
    importance_repeats: int = Field(default=3, ge=1, le=100)
    fit_final: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierConfig:
        if self.role == "tactician" and self.timeframe != "1m":
            raise ValueError(f"a tactician trades 1m bars, got timeframe {self.timeframe!r}")
        known = set(_estimator_class(self.estimator)().get_params())
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ValueError(
                f"unknown {self.estimator} parameter(s) {unknown}; it takes {sorted(known)}"
            )
        if "random_state" in self.params:
            raise ValueError("params must not set random_state; use seed")
        if self.importance == "impurity" and self.estimator != "random_forest":
            raise ValueError("importance 'impurity' needs estimator 'random_forest'")
        if self.features is not None:
            if not self.features:
                raise ValueError("features must name at least one feature (or be omitted for all)")
            bad = sorted(set(self.features) - set(FEATURE_NAMES))
            if bad:
                raise ValueError(
                    f"unknown feature(s) {bad}; bar_features_v1 has {len(FEATURE_NAMES)}"
                )
            if len(set(self.features)) != len(self.features):
                raise ValueError("features are listed more than once")
        return self

    @property
    def display(self) -> str:
        return self.name or f"{self.role}_{self.timeframe}_{self.labels.kind}_{self.estimator}"

    @property
    def dataset(self) -> str:
        """The bars spec :func:`train` loads when it is given no bars."""
        return self.data or DEFAULT_DATA[self.timeframe]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features or FEATURE_NAMES

    @property
    def estimator_params(self) -> dict[str, Any]:
        """:data:`DEFAULT_PARAMS` updated by ``params``, with ``random_state = seed``."""
        return {**DEFAULT_PARAMS[self.estimator], **self.params, "random_state": self.seed}


def standard_configs(seed: int = 0) -> list[ClassifierConfig]:
    """The four analysts (1h, 15m, 5m, 1m; 12-bar fixed-horizon sign, random forest) and the 1m
    tactician (10-bar triple barrier at ±2 x 20-bar volatility, gradient boosting)."""
    analysts = [
        ClassifierConfig(role="analyst", timeframe=tf, seed=seed)
        for tf in ("1h", "15m", "5m", "1m")
    ]
    tactician = ClassifierConfig(
        role="tactician",
        timeframe="1m",
        labels=TripleBarrierLabel(horizon=10),
        estimator="hist_gradient_boosting",
        seed=seed,
    )
    return [*analysts, tactician]


def _estimator_class(name: str) -> Any:
    # scikit-learn ships no type information
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )

    return {
        "random_forest": RandomForestClassifier,
        "hist_gradient_boosting": HistGradientBoostingClassifier,
    }[name]


def make_pipeline(config: ClassifierConfig) -> Any:
    """An unfitted ``StandardScaler`` → estimator pipeline for ``config``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = _estimator_class(config.estimator)(**config.estimator_params)
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def _fit(pipeline: Any, x: pd.DataFrame, y: np.ndarray, config: ClassifierConfig) -> Any:
    try:
        return pipeline.fit(x, y)
    except (ValueError, TypeError) as exc:  # sklearn's InvalidParameterError derives from both
        raise ConfigError(f"{config.display}: fitting {config.estimator} failed: {exc}") from exc


def _check_utc(index: pd.Index, what: str) -> None:
    tz = index.tz if isinstance(index, pd.DatetimeIndex) else None
    if tz is None or str(tz) != "UTC":
        if not isinstance(index, pd.DatetimeIndex):
            got = f"a {type(index).__name__}"
        else:
            got = f"timestamps in {tz}" if tz is not None else "timezone-naive timestamps"
        raise ConfigError(f"{what} must be indexed by timezone-aware UTC timestamps, got {got}")


def _check_timeframe(bars: Bars, config: ClassifierConfig) -> None:
    if bars.timeframe.name != config.timeframe:
        raise ConfigError(
            f"{config.display} is a {config.timeframe} model but {bars.symbol} bars are "
            f"{bars.timeframe.name}"
        )


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples of one bar series: features ``x`` (index = bar open time), classes ``y``, label ends
    ``ends`` in sample positions (for purging), and each sample's position ``bar_pos`` in the bars."""

    x: pd.DataFrame
    y: np.ndarray
    ends: np.ndarray
    bar_pos: np.ndarray
    bar_index: pd.DatetimeIndex

    def __len__(self) -> int:
        return len(self.y)

    def with_labels(self, y: np.ndarray) -> Dataset:
        """The same samples with other classes (e.g. a shuffled-label baseline)."""
        yy = np.asarray(y, dtype=np.int64)
        if yy.shape != self.y.shape:
            raise ConfigError(f"{len(yy)} labels for {len(self.y)} samples")
        return Dataset(self.x, yy, self.ends, self.bar_pos, self.bar_index)


def build_dataset(
    bars: Bars, config: ClassifierConfig, features: pd.DataFrame | None = None
) -> Dataset:
    """Warm, labelled bars of ``bars`` as samples (``features`` defaults to ``compute_features``)."""
    _check_timeframe(bars, config)
    feats = compute_features(bars) if features is None else features
    _check_features(feats, config)
    if not feats.index.equals(bars.index):
        raise ConfigError(f"features are not indexed like the {len(bars)} bars of {bars.symbol}")
    labels = make_labels(bars, config.labels)
    keep = feats[WARM_COLUMN].to_numpy(dtype=bool) & labels.valid
    bar_pos = np.flatnonzero(keep).astype(np.int64)
    # a label's end bar → the last sample position at or before it; end < bar of sample s ⇔ pos < s
    ends = np.searchsorted(bar_pos, labels.end[bar_pos], side="right").astype(np.int64) - 1
    return Dataset(
        x=feats.loc[keep, list(config.feature_names)],
        y=labels.values[bar_pos].astype(np.int64),
        ends=ends,
        bar_pos=bar_pos,
        bar_index=bars.index,
    )


def _check_features(features: pd.DataFrame, config: ClassifierConfig) -> None:
    if not isinstance(features, pd.DataFrame):
        raise ConfigError(f"features must be a DataFrame, got {type(features).__name__}")
    _check_utc(features.index, "features")
    missing = [c for c in (*config.feature_names, WARM_COLUMN) if c not in features.columns]
    if missing:
        raise ConfigError(
            f"features lack column(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}: "
            "pass raytrader.features.compute_features(bars)"
        )


def targets_from_proba(
    p_up: np.ndarray, p_down: np.ndarray, threshold: float, *, long_only: bool = False
) -> np.ndarray:
    """Target positions from class probabilities (rule in the module docstring); NaN rows → 0."""
    up, down = np.asarray(p_up, dtype=np.float64), np.asarray(p_down, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        long_ = (up >= threshold) & (up > down)
        short = (down >= threshold) & (down > up) & (not long_only)
    return np.where(long_, 1.0, np.where(short, -1.0, 0.0))


def _direction_proba(pipeline: Any, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all class probabilities, P(+1), P(-1)); a class absent from training has probability 0."""
    proba = np.asarray(pipeline.predict_proba(x), dtype=np.float64)
    classes = [int(c) for c in pipeline.classes_]
    zeros = np.zeros(len(x))
    p_up = proba[:, classes.index(1)] if 1 in classes else zeros
    p_down = proba[:, classes.index(-1)] if -1 in classes else zeros
    return proba, p_up, p_down


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """accuracy and macro precision/recall/F1 (module docstring)."""
    from sklearn.metrics import (
        accuracy_score,
        precision_recall_fscore_support,
    )

    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One fold. ``train_end`` is the open time of the last training bar (after the test window under
    ``purged_kfold``), ``test_start``/``test_end`` those of the first/last test bar; the arrays are per
    test bar: its position in the bars, predicted class, target and confidence."""

    index: int
    n_train: int
    n_test: int
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    metrics: dict[str, float]
    importance: dict[str, float]
    test_bar_pos: np.ndarray
    predictions: np.ndarray
    targets: np.ndarray
    confidence: np.ndarray


def _importance(
    pipeline: Any, x_test: pd.DataFrame, y_test: np.ndarray, config: ClassifierConfig
) -> dict[str, float]:
    """Per-feature importance of a fitted fold pipeline (module docstring)."""
    if config.importance == "none":
        return {}
    if config.importance == "impurity":
        values = np.asarray(pipeline.named_steps["model"].feature_importances_, dtype=np.float64)
    else:
        from sklearn.inspection import permutation_importance

        res = permutation_importance(
            pipeline,
            x_test,
            y_test,
            scoring="accuracy",
            n_repeats=config.importance_repeats,
            random_state=config.seed,
            n_jobs=1,
        )
        values = np.asarray(res.importances_mean, dtype=np.float64)
    return {str(n): float(v) for n, v in zip(x_test.columns, values, strict=True)}


def _evaluate_fold(dataset: Dataset, fold: Fold, config: ClassifierConfig) -> FoldResult:
    x_test, y_test = dataset.x.iloc[fold.test], dataset.y[fold.test]
    y_train = dataset.y[fold.train]
    pipe = _fit(make_pipeline(config), dataset.x.iloc[fold.train], y_train, config)
    proba, p_up, p_down = _direction_proba(pipe, x_test)
    pred = np.asarray(pipe.classes_, dtype=np.int64)[np.argmax(proba, axis=1)]
    values, counts = np.unique(y_train, return_counts=True)
    metrics = classification_metrics(y_test, pred)
    metrics["majority_baseline"] = float(np.mean(y_test == values[np.argmax(counts)]))
    test_pos = dataset.bar_pos[fold.test]
    idx = dataset.bar_index
    return FoldResult(
        index=fold.index,
        n_train=len(fold.train),
        n_test=len(fold.test),
        train_end=idx[int(dataset.bar_pos[fold.train.max()])],
        test_start=idx[int(test_pos[0])],
        test_end=idx[int(test_pos[-1])],
        metrics=metrics,
        importance=_importance(pipe, x_test, y_test, config),
        test_bar_pos=test_pos,
        predictions=pred,
        targets=targets_from_proba(p_up, p_down, config.threshold, long_only=config.long_only),
        confidence=np.maximum(p_up, p_down),
    )


def cross_validate(dataset: Dataset, config: ClassifierConfig) -> list[FoldResult]:
    """Fit and score one pipeline per fold (module docstring); deterministic for a fixed seed."""
    return [
        _evaluate_fold(dataset, fold, config)
        for fold in walk_forward_folds(dataset.ends, config.validation)
    ]


@dataclass(eq=False)
class TrainedModel:
    """A fitted pipeline that turns feature rows into target positions."""

    config: ClassifierConfig
    pipeline: Any
    symbol: str

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.pipeline.classes_)

    def _rows(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(warm mask, P(+1), P(-1)) with NaN probabilities on rows that are not warm."""
        _check_features(features, self.config)
        warm = features[WARM_COLUMN].to_numpy(dtype=bool)
        p_up, p_down = np.full(len(features), np.nan), np.full(len(features), np.nan)
        if warm.any():
            x = features.loc[warm, list(self.config.feature_names)]
            _, p_up[warm], p_down[warm] = _direction_proba(self.pipeline, x)
        return warm, p_up, p_down

    def predict_proba(self, features: pd.DataFrame) -> pd.DataFrame:
        """P(+1) and P(-1) per row (columns ``up``, ``down``; NaN before warm-up)."""
        _, up, down = self._rows(features)
        return pd.DataFrame({"up": up, "down": down}, index=features.index)

    def predict_targets(self, features: pd.DataFrame) -> np.ndarray:
        """Target position in {-1, 0, +1} per row of ``compute_features`` output (0 before warm-up)."""
        _, up, down = self._rows(features)
        return targets_from_proba(up, down, self.config.threshold, long_only=self.config.long_only)

    def confidence(self, features: pd.DataFrame) -> np.ndarray:
        """``max(P(+1), P(-1))`` per row, NaN before warm-up."""
        _, up, down = self._rows(features)
        conf: np.ndarray = np.fmax(up, down)
        return conf

    def backtest(self, bars: Bars, sim: SimConfig | None = None) -> BacktestResult:
        """Backtest this model's targets on ``bars`` with the simulation kernel. In-sample on the bars
        it was fitted on; use :meth:`TrainResult.backtest_oos` for walk-forward test windows."""
        _check_timeframe(bars, self.config)
        targets = self.predict_targets(compute_features(bars))
        series = pd.Series(targets, index=bars.index, name=self.config.display)
        return run_backtest(bars, series, sim, name=self.config.display)


@dataclass(eq=False)
class TrainResult:
    """What :func:`train` returns: fold results, their summary, the final model and out-of-sample
    targets (each test window's fold model; 0 outside the test windows)."""

    config: ClassifierConfig
    symbol: str
    timeframe: str
    n_samples: int
    folds: list[FoldResult]
    oos_targets: pd.Series
    model: TrainedModel | None = None

    @cached_property
    def summary(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean": .., "std": ..}}`` over folds (population std)."""
        keys = list(self.folds[0].metrics) if self.folds else []
        return {
            k: {
                "mean": float(np.mean([f.metrics[k] for f in self.folds])),
                "std": float(np.std([f.metrics[k] for f in self.folds])),
            }
            for k in keys
        }

    @cached_property
    def importance(self) -> dict[str, float]:
        """Mean importance over folds, largest first (ties by name)."""
        if not self.folds or not self.folds[0].importance:
            return {}
        names = list(self.folds[0].importance)
        mean = {n: float(np.mean([f.importance[n] for f in self.folds])) for n in names}
        return dict(sorted(mean.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def oos_predictions(self) -> pd.Series:
        """Predicted class of every test-window bar (index = bar open time)."""
        pos = np.concatenate([f.test_bar_pos for f in self.folds])
        values = np.concatenate([f.predictions for f in self.folds])
        return pd.Series(values, index=self.oos_targets.index[pos], name="prediction")

    def backtest_oos(self, bars: Bars, sim: SimConfig | None = None) -> BacktestResult:
        """Backtest the out-of-sample targets on the bars they were trained on."""
        return run_backtest(bars, self.oos_targets, sim, name=f"{self.config.display}:oos")

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "name": self.config.display,
            "config": self.config.model_dump(mode="json"),
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "samples": self.n_samples,
            "folds": [
                {
                    "fold": f.index,
                    "n_train": f.n_train,
                    "n_test": f.n_test,
                    "train_end": f.train_end.isoformat(),
                    "test_start": f.test_start.isoformat(),
                    "test_end": f.test_end.isoformat(),
                    **f.metrics,
                }
                for f in self.folds
            ],
            "summary": self.summary,
            "importance": dict(list(self.importance.items())[:20]),
        }


def train(
    config: ClassifierConfig | Mapping[str, Any],
    bars: Bars | None = None,
    *,
    features: pd.DataFrame | None = None,
    dataset: Dataset | None = None,
) -> TrainResult:
    """Validate ``config`` by walk-forward folds, then (``fit_final``) fit on every sample.

    ``bars`` default to ``config.dataset``; ``features`` to the ``feature_source``'s matrix
    (:func:`raytrader.features.matrix.training_features`); ``dataset``
    (samples already built from these bars, e.g. with other labels) replaces both.
    """
    cfg = config if isinstance(config, ClassifierConfig) else ClassifierConfig.parse(dict(config))
    if bars is None:
        from raytrader.data.sources import load_bars

        bars = load_bars(cfg.dataset)
    if features is None and dataset is None:
        from raytrader.features.matrix import training_features

        features = training_features(bars, cfg.feature_source)
    ds = build_dataset(bars, cfg, features) if dataset is None else dataset
    if len(ds.bar_index) != len(bars) or not ds.bar_index.equals(bars.index):
        raise ConfigError("dataset was not built from these bars")
    folds = cross_validate(ds, cfg)
    oos = np.zeros(len(bars))
    for f in folds:
        oos[f.test_bar_pos] = f.targets
    model = None
    if cfg.fit_final:
        model = TrainedModel(cfg, _fit(make_pipeline(cfg), ds.x, ds.y, cfg), bars.symbol)
    return TrainResult(
        config=cfg,
        symbol=bars.symbol,
        timeframe=bars.timeframe.name,
        n_samples=len(ds),
        folds=folds,
        oos_targets=pd.Series(oos, index=bars.index, name=f"{cfg.display}:oos"),
        model=model,
    )


def fit_model(
    config: ClassifierConfig, dataset: Dataset, rows: np.ndarray, symbol: str
) -> TrainedModel:
    """A model fitted on the samples at positions ``rows`` of ``dataset`` (e.g. one fold's training
    samples; checking them for leakage is the caller's job, see :func:`check_folds`)."""
    pipe = _fit(make_pipeline(config), dataset.x.iloc[rows], dataset.y[rows], config)
    return TrainedModel(config, pipe, symbol)


def _train_task(config: ClassifierConfig, bars: Bars | None) -> TrainResult:
    """Body of one Ray task."""
    return train(config, bars)


def train_many(
    configs: Sequence[ClassifierConfig | Mapping[str, Any]],
    bars: Bars | None = None,
    *,
    address: str | None = None,
    on_result: Callable[[int, TrainResult], None] | None = None,
) -> list[TrainResult]:
    """Train each config as one Ray task (1 CPU each), results in ``configs`` order.

    ``bars`` (uploaded to the object store once) serve every config; without them each task loads its
    config's :attr:`ClassifierConfig.dataset`. ``on_result(i, result)`` is called as each task
    finishes (in completion order). A failing task raises :class:`RaytraderError` naming its config
    (a :class:`ConfigError` when the config was at fault).
    """
    from raytrader import wiring

    cfgs = [
        c if isinstance(c, ClassifierConfig) else ClassifierConfig.parse(dict(c)) for c in configs
    ]
    if bars is not None:
        for c in cfgs:
            _check_timeframe(bars, c)
    bars_ref = wiring.ray(address).put(bars) if bars is not None else None
    return wiring.ray_tasks(
        _train_task,
        [(c, bars_ref) for c in cfgs],
        lambda i: f"training {cfgs[i].display}",
        address=address,
        on_result=on_result,
    )
