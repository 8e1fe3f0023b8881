"""A market the environment trades: bar arrays plus the feature matrix, from one :class:`Bars`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.features.engine import WARM_COLUMN, compute_features
from raytrader.features.spec import FeatureSet


@dataclass(frozen=True, eq=False)
class Market:
    """Bars and their features over rows ``[lo, hi)`` of the full series.

    Features are always computed on the *whole* series and then sliced, so a split's first rows
    have the same values as in the batch engine (features are truncation invariant, and slicing
    never lets a row see later bars). ``first`` is the first row where every feature is warm.
    """

    bars: Bars
    features: np.ndarray  # (n_bars x n_features), all rows of ``bars``
    feature_names: tuple[str, ...]
    warm_from: int  # first warm row of the whole series
    lo: int
    hi: int

    @classmethod
    def from_bars(
        cls,
        bars: Bars,
        feature_set: FeatureSet | None = None,
        features: pd.DataFrame | None = None,
    ) -> Market:
        """``features`` (e.g. read from Feast) replace computing ``feature_set`` on ``bars``."""
        frame = compute_features(bars, feature_set) if features is None else features
        if not frame.index.equals(bars.index):
            raise ConfigError(
                f"features are not indexed like the {len(bars)} bars of {bars.symbol}"
            )
        names = tuple(c for c in frame.columns if c != WARM_COLUMN)
        warm = frame[WARM_COLUMN].to_numpy()
        if not warm.any():
            raise ConfigError(
                f"{bars.symbol}: {len(bars)} bars are fewer than the feature set's warm-up"
            )
        feats = np.ascontiguousarray(frame[list(names)].to_numpy(dtype=np.float64))
        return cls(bars, feats, names, int(np.argmax(warm)), 0, len(bars))

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
        return Market(self.bars, self.features, self.feature_names, self.warm_from, lo, hi)

    def usable_features(self) -> np.ndarray:
        return self.features[self.first : self.hi]
