"""Feature normalization fitted on the training split only, serializable so that serving builds
the very same observation from one online-store row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raytrader.errors import ConfigError

CLIP = 10.0


@dataclass(frozen=True)
class FeatureNormalizer:
    """``z = clip((x - mean) / std, -10, 10)``, NaN -> 0, per feature column.

    ``mean``/``std`` are the training rows' mean and population std (NaNs ignored); a constant or
    all-NaN column gets std 1 (and mean 0 if all NaN), so it maps to 0.
    """

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, names: Sequence[str]) -> FeatureNormalizer:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ConfigError(f"fit: features of shape {x.shape} do not match {len(names)} names")
        if x.shape[0] == 0:
            raise ConfigError("fit: no training rows")
        finite = np.isfinite(x)
        counts = finite.sum(axis=0)
        filled = np.where(finite, x, 0.0)
        mean = np.divide(filled.sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
        dev = np.where(finite, x - mean, 0.0)
        var = np.divide((dev**2).sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
        std = np.sqrt(var)
        std = np.where(std > 0.0, std, 1.0)
        return cls(tuple(names), mean, std)

    def transform(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        out: np.ndarray = np.clip(np.nan_to_num(z, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureNormalizer:
        try:
            names = tuple(str(n) for n in data["names"])
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"normalizer: expected names, mean and std ({exc})") from exc
        if not (len(names) == mean.shape[0] == std.shape[0]) or (std <= 0).any():
            raise ConfigError("normalizer: names, mean and std must align and std must be > 0")
        return cls(names, mean, std)
