"""What a hyperparameter search is: its config (:class:`SearchConfig`), its search space
(:class:`Param`) and how it cuts the bars (:func:`fold_windows`, :func:`holdout_window`).

The search driver (:mod:`raytrader.training.tune`) and what a trial computes
(:mod:`raytrader.training.objectives`) both import this module, and ``objectives`` never imports
``tune``: the imports run tune → objectives → search_config, without a cycle. ``tune`` re-exports
:class:`SearchConfig`, :class:`Param` and :func:`fold_windows`.

The bars of a search, in order (``n`` bars, ``usable = n - warmup_bars``)::

    [0, warmup_bars)                    indicator/feature warm-up, never scored
    [warmup_bars, first window)         training head (``train_fraction`` of usable; 0 for rule)
    [first window, last window end)     ``folds`` consecutive validation windows: the selection
                                        range, the only bars a trial is scored on
    [n - int(usable * holdout), n)      the held-out tail: never seen by a trial, scored once for
                                        the selected config after the search
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError
from raytrader.sim.config import SimConfig

MIN_WINDOW_BARS = 20
"""A validation window shorter than this is a :class:`ConfigError` (its Sharpe is noise)."""


def with_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each sampled value set at its dotted path (``params.n_estimators`` sets
    ``base["params"]["n_estimators"]``)."""
    out = copy.deepcopy(dict(base))
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"search parameter {path!r}: {key!r} is not a section")
            node = child
        node[leaf] = value.item() if isinstance(value, np.generic) else value
    return out


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
        """The Ray Tune sampling domain."""
        from ray import tune  # lazily: Ray is slow to import and a config parses without it

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
    #: share of the usable bars at the end that no trial sees; the winner is scored on it once
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

    @property
    def dataset(self) -> str:
        """The bars spec the search runs on (``data``, or the target's default)."""
        if self.data is not None:
            return self.data
        if self.target == "rule":
            return "goog"
        cfg = self.target_config({k: p.corner("low") for k, p in self.space.items()})
        return str(cfg.dataset if self.target == "supervised" else cfg.data)

    def final_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` with ``params`` as a config to train for real (``raytrader train``): without
        the settings the search imposes on its trials (no final fit, its own train split)."""
        merged = with_params(self.base, params)
        if self.target == "rule":
            return merged
        if self.data is not None:
            merged["data"] = self.data
        # the model configs load lazily: a rule search never imports scikit-learn or RLlib
        if self.target == "supervised":
            from raytrader.models.supervised import ClassifierConfig

            return ClassifierConfig.parse(merged).model_dump(mode="json")
        from raytrader.training.rl import RLConfig

        return RLConfig.parse(merged).model_dump(mode="json")

    def target_config(self, params: Mapping[str, Any]) -> Any:
        """What a trial runs: the rule strategy's parameter dict, or the ClassifierConfig /
        RLConfig of ``base`` with ``params`` set at their paths."""
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


def holdout_window(n_bars: int, config: SearchConfig) -> tuple[int, int]:
    """The ``[lo, hi)`` bars of the held-out tail (empty, ``lo == hi``, without a holdout)."""
    usable = n_bars - config.warmup_bars
    return n_bars - int(usable * config.holdout_fraction), n_bars


def fold_windows(
    n_bars: int, config: SearchConfig, start: int | None = None
) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` bar ranges of the validation windows: from ``start`` (default: after the
    warm-up and the training head) to the held-out tail."""
    usable = n_bars - config.warmup_bars
    usable_end = holdout_window(n_bars, config)[0]
    if start is None:
        start = config.warmup_bars + int(usable * config.fractions[0])
    edges = np.linspace(start, usable_end, config.folds + 1).astype(int)
    windows = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    if any(b - a < MIN_WINDOW_BARS for a, b in windows):
        raise ConfigError(
            f"{n_bars} bars give validation windows under {MIN_WINDOW_BARS} bars; use fewer "
            "folds or more data"
        )
    return windows


__all__ = [
    "MIN_WINDOW_BARS",
    "RL_OWNED",
    "Param",
    "SearchConfig",
    "fold_windows",
    "holdout_window",
    "with_params",
]
