"""A market the environment trades: bar arrays plus the feature matrix, from one :class:`Bars`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from raytrader.data.bars import Bars
from raytrader.envs.config import EnvConfig
from raytrader.errors import ConfigError
from raytrader.features import BAR_FEATURES_V1, get_feature_set
from raytrader.features.engine import WARM_COLUMN, compute_features
from raytrader.features.spec import FeatureSet


@dataclass(frozen=True, eq=False)
class Market:
    """Bars and their features over rows ``[lo, hi)`` of the full series.

    Features are always computed on the *whole* series and then sliced, so a split's first rows
    have the same values as in the batch engine (features are truncation invariant, and slicing
    never lets a row see later bars). ``first`` is the first row where every feature of the set
    is warm. ``feature_set`` names the set the columns come from; an environment keeps the columns
    its config observes (:meth:`observed`).
    """

    bars: Bars
    features: np.ndarray  # (n_bars x n_features), all rows of ``bars``
    feature_names: tuple[str, ...]
    warm_from: int  # first warm row of the whole series
    lo: int
    hi: int
    feature_set: str = BAR_FEATURES_V1.name

    @classmethod
    def from_bars(
        cls,
        bars: Bars,
        feature_set: FeatureSet | None = None,
        features: pd.DataFrame | None = None,
    ) -> Market:
        """The features of ``feature_set`` (default ``bar_features_v1``) on ``bars``; given
        ``features`` (e.g. read from Feast) replace computing them and must be that set's columns
        and ``warm``."""
        fs = feature_set or BAR_FEATURES_V1
        frame = compute_features(bars, fs) if features is None else features
        if not frame.index.equals(bars.index):
            raise ConfigError(
                f"features are not indexed like the {len(bars)} bars of {bars.symbol}"
            )
        names = tuple(c for c in frame.columns if c != WARM_COLUMN)
        if names != tuple(fs.names):
            raise ConfigError(
                f"the features given for {bars.symbol} are not the columns of {fs.name} "
                f"({len(names)} columns, {len(fs.names)} expected)"
            )
        warm = frame[WARM_COLUMN].to_numpy()
        if not warm.any():
            raise ConfigError(
                f"{bars.symbol}: {len(bars)} bars are fewer than the feature set's warm-up"
            )
        feats = np.ascontiguousarray(frame[list(names)].to_numpy(dtype=np.float64))
        return cls(bars, feats, names, int(np.argmax(warm)), 0, len(bars), fs.name)

    def with_bars(self, bars: Bars) -> Market:
        """The same set's features computed on other ``bars`` (a stress scenario), same rows."""
        full = Market.from_bars(bars, get_feature_set(self.feature_set))
        return full.select(self.feature_names).rows(self.lo, self.hi)

    def select(self, names: Sequence[str]) -> Market:
        """The same rows with only the features ``names``, in that order. ``first`` does not move:
        it stays the first row where the whole set is warm."""
        names = tuple(names)
        if names == self.feature_names:
            return self
        index = {n: j for j, n in enumerate(self.feature_names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ConfigError(
                f"{self.bars.symbol}: the market carries no feature(s) {missing} of {self.feature_set}"
            )
        cols = [index[n] for n in names]
        return replace(
            self, features=np.ascontiguousarray(self.features[:, cols]), feature_names=names
        )

    def observed(self, config: EnvConfig) -> Market:
        """The market with the features ``config`` observes; refuses a market built from another
        feature set than the config names."""
        if self.feature_set != config.feature_set:
            raise ConfigError(
                f"{self.bars.symbol}: the market carries {self.feature_set} but the environment "
                f"observes {config.feature_set}; build it with "
                f"Market.from_bars(bars, get_feature_set({config.feature_set!r}))"
            )
        return self.select(config.feature_names)

    @property
    def first(self) -> int:
        """First usable row of this split: warm and inside it."""
        return max(self.lo, self.warm_from)

    @property
    def n_usable(self) -> int:
        return max(self.hi - self.first, 0)

    def column(self, name: str) -> np.ndarray:
        return self.bars.column(name)

    def split(self, train_fraction: float) -> tuple[Market, Market]:
        """(train, test): the first ``train_fraction`` of the usable rows, then the rest."""
        if not 0.0 < train_fraction < 1.0:
            raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
        cut = self.first + int(self.n_usable * train_fraction)
        return self.rows(self.lo, cut), self.rows(cut, self.hi)

    def rows(self, lo: int, hi: int) -> Market:
        if not 0 <= lo < hi <= len(self.bars):
            raise ConfigError(f"rows [{lo}, {hi}) outside the {len(self.bars)} bars")
        return replace(self, lo=lo, hi=hi)

    def usable_features(self) -> np.ndarray:
        return self.features[self.first : self.hi]
