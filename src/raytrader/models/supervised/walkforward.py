"""Time-series cross-validation with purging and an embargo (no shuffled K-fold, ever).

Samples are positions ``0 .. n-1`` on one time axis, in time order; ``ends[i] >= i`` is the position
of the last bar sample ``i``'s label looks at (:attr:`raytrader.models.supervised.labels.Labels.end`,
mapped to sample positions; it may be ``>= n``). A fold is a contiguous test window
``[s, e)`` and a set of training positions.

``scheme="walk_forward"`` (default)
    The test windows are the last ``n_folds * T`` samples, cut into ``n_folds`` consecutive windows of
    ``T = test_size`` samples (default ``n // (n_folds + 1)``, so the first block, of at least ``T``
    samples, only ever trains). Fold ``k`` trains on samples *before* its window only: all of them
    (expanding window) or, with ``train_size``, the last ``train_size`` positions before the purge.
``scheme="purged_kfold"``
    The samples are cut into ``n_folds`` contiguous windows (as :func:`numpy.array_split`); each is the
    test window once and training uses both sides of it. Time-ordered, but the model sees the future of
    the test window, so prefer ``walk_forward`` for a trading estimate.

Every fold then removes training sample ``i`` unless

* ``i < s``: ``ends[i] < s`` (**purge**: its label's horizon ends before the test window) and
  ``i < s - purge`` (an extra gap of ``purge`` samples, 0 by default);
* ``i >= e``: ``i >= e + embargo`` (**embargo**: the ``embargo`` samples after a test window, whose
  features look back into it, never train) and ``i > max(ends[test])`` (no overlap with a test
  label's horizon).

With walk-forward no training sample follows its test window, so the embargo only binds for
``purged_kfold``. A fold left with fewer than ``min_train`` training samples is a :class:`ConfigError`.
:func:`check_folds` re-checks every rule; :func:`walk_forward_folds` runs it on what it yields.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError, RaytraderError


class FoldLeakError(RaytraderError, AssertionError):
    """A fold breaks the purge/embargo rules: a training label could see test data."""


class WalkForwardConfig(StrictConfig):
    """Fold geometry (see the module docstring for the exact rules)."""

    scheme: Literal["walk_forward", "purged_kfold"] = "walk_forward"
    n_folds: int = Field(default=5, ge=1, le=1000)
    test_size: int | None = Field(default=None, ge=1)
    train_size: int | None = Field(default=None, ge=1)
    purge: int = Field(default=0, ge=0)
    embargo: int = Field(default=0, ge=0)
    min_train: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _scheme_options(self) -> WalkForwardConfig:
        if self.scheme == "purged_kfold":
            if self.n_folds < 2:
                raise ValueError("purged_kfold needs n_folds >= 2")
            for name in ("test_size", "train_size"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to scheme 'walk_forward' only")
        return self


@dataclass(frozen=True, eq=False)
class Fold:
    """One split: ``train`` and ``test`` are sorted int64 sample positions; test is ``[start, stop)``."""

    index: int
    train: np.ndarray
    test: np.ndarray

    @property
    def test_start(self) -> int:
        return int(self.test[0])

    @property
    def test_stop(self) -> int:
        return int(self.test[-1]) + 1


def _ends_array(ends: np.ndarray | Sequence[int], n: int | None = None) -> np.ndarray:
    e = np.asarray(ends)
    if e.ndim != 1 or not np.issubdtype(e.dtype, np.integer):
        raise ConfigError(f"label ends must be a 1-D integer array, got {e.dtype} {e.shape}")
    e = e.astype(np.int64, copy=False)
    if n is not None and len(e) != n:
        raise ConfigError(f"label ends have {len(e)} entries for {n} samples")
    behind = e < np.arange(len(e))
    if behind.any():
        i = int(np.argmax(behind))
        raise ConfigError(f"label end {int(e[i])} of sample {i} lies before the sample itself")
    return e


def _test_windows(cfg: WalkForwardConfig, n: int) -> list[tuple[int, int]]:
    if cfg.scheme == "purged_kfold":
        if n < cfg.n_folds:
            raise ConfigError(f"{n} samples cannot make {cfg.n_folds} purged_kfold folds")
        bounds = [len(a) for a in np.array_split(np.arange(n), cfg.n_folds)]
        stops = np.cumsum(bounds)
        return [(int(b - size), int(b)) for b, size in zip(stops, bounds, strict=True)]
    size = cfg.test_size if cfg.test_size is not None else n // (cfg.n_folds + 1)
    first = n - cfg.n_folds * size
    if size < 1 or first < 1:
        raise ConfigError(
            f"{n} samples are too few for {cfg.n_folds} walk-forward folds"
            + (f" of test_size {cfg.test_size}" if cfg.test_size is not None else "")
            + ": lower n_folds or test_size, or give more bars"
        )
    return [(first + k * size, first + (k + 1) * size) for k in range(cfg.n_folds)]


def walk_forward_folds(
    ends: np.ndarray | Sequence[int], config: WalkForwardConfig | None = None
) -> Iterator[Fold]:
    """The folds of ``len(ends)`` samples (module docstring); each passes :func:`check_folds`."""
    cfg = config or WalkForwardConfig()
    e = _ends_array(ends)
    n = len(e)
    pos = np.arange(n, dtype=np.int64)
    for k, (s, stop) in enumerate(_test_windows(cfg, n)):
        before = (pos < s - cfg.purge) & (e < s)
        if cfg.scheme == "walk_forward" and cfg.train_size is not None:
            before &= pos >= s - cfg.purge - cfg.train_size
        after = np.zeros(n, dtype=bool)
        if cfg.scheme == "purged_kfold":
            after = (pos >= stop + cfg.embargo) & (pos > e[s:stop].max())
        train = pos[before | after]
        if len(train) < cfg.min_train:
            raise ConfigError(
                f"fold {k} (test samples {s}..{stop - 1}) keeps {len(train)} training samples after "
                f"purge/embargo, fewer than min_train={cfg.min_train}; give more bars or fewer folds"
            )
        fold = Fold(index=k, train=train, test=pos[s:stop])
        check_folds([fold], e, purge=cfg.purge, embargo=cfg.embargo)
        yield fold


def check_folds(
    folds: Sequence[Fold], ends: np.ndarray | Sequence[int], *, purge: int = 0, embargo: int = 0
) -> None:
    """Raise :class:`FoldLeakError` naming the first fold and sample that break a rule: test windows
    contiguous and pairwise disjoint, training disjoint from testing, every earlier training sample
    purged (``ends[i] < s`` and ``i < s - purge``), every later one embargoed (``i >= e + embargo``
    and ``i > max(ends[test])``)."""
    e = _ends_array(ends)
    n = len(e)
    seen = np.zeros(n, dtype=bool)
    for f in folds:
        test, train = np.asarray(f.test, dtype=np.int64), np.asarray(f.train, dtype=np.int64)
        where = f"fold {f.index}"
        if len(test) == 0 or test[0] < 0 or test[-1] >= n:
            raise FoldLeakError(f"{where}: test window empty or outside the {n} samples")
        if not np.array_equal(test, np.arange(test[0], test[-1] + 1)):
            raise FoldLeakError(f"{where}: test window is not one contiguous block")
        if seen[test].any():
            raise FoldLeakError(f"{where}: test window overlaps an earlier fold's test window")
        seen[test] = True
        if len(train) and (train.min() < 0 or train.max() >= n):
            raise FoldLeakError(f"{where}: training positions outside the {n} samples")
        s, stop = int(test[0]), int(test[-1]) + 1
        inside = train[(train >= s) & (train < stop)]
        if len(inside):
            raise FoldLeakError(f"{where}: training sample {int(inside[0])} is in the test window")
        early = train[train < s]
        bad = early[(e[early] >= s) | (early >= s - purge)]
        if len(bad):
            i = int(bad[0])
            raise FoldLeakError(
                f"{where}: training sample {i} (label ends at {int(e[i])}) is not purged before the "
                f"test window starting at {s} with purge {purge}"
            )
        late = train[train >= stop]
        bad = late[(late < stop + embargo) | (late <= e[test].max())]
        if len(bad):
            raise FoldLeakError(
                f"{where}: training sample {int(bad[0])} lies in the embargo of {embargo} after the "
                f"test window ending at {stop - 1} or within a test label's horizon"
            )
