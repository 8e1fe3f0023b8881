"""Training matrices through the one feature definition the stream and serving use.

``feature_matrix(bars, source="feast", fs=...)`` is the point-in-time join of the ``ensemble_v1``
feature service onto the bars' close times (Feast historical retrieval: the stack's path);
``source="batch"`` computes the same features with the batch engine (the embedded path). Both
return one row per bar — index = bar open time (UTC), columns = the ``bar_features_v1`` features
then ``warm`` — and are equal bit for bit when the offline store holds the bars' rows (tested).

Training pipelines name their source with ``feature_source``: ``auto`` (the default) reads Feast
when the stack's environment is exported (``eval "$(raytrader stack env)"`` sets
``RAYTRADER_FEAST_REPO``), the batch engine otherwise; ``feast`` and ``batch`` force one. Feast
missing a bar is an error naming it, never a silent fallback.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.features.engine import WARM_COLUMN, compute_features

if TYPE_CHECKING:
    from feast import FeatureStore

FeatureSource = Literal["auto", "batch", "feast"]


def resolve_source(source: FeatureSource) -> Literal["batch", "feast"]:
    """``auto`` → ``feast`` when the stack's environment is exported, else ``batch``."""
    from raytrader.features.feast_repo import REPO_ENV

    if source == "auto":
        return "feast" if os.environ.get(REPO_ENV) else "batch"
    return source


def training_features(bars: Bars, source: FeatureSource = "auto") -> pd.DataFrame:
    """The feature matrix a training pipeline uses for ``bars`` (see the module docstring); Feast
    is the stack's store (``redis`` profile, offline rows under ``RAYTRADER_FEAST_DATA``)."""
    if resolve_source(source) == "batch":
        return feature_matrix(bars)
    from raytrader.features import feast_repo as fr

    try:
        return feature_matrix(bars, source="feast", fs=fr.store("redis"))
    except ConfigError as exc:
        raise ConfigError(
            f"{exc} (the stream consumer or `raytrader features backfill --data ...` writes them; "
            "or set feature_source: batch)"
        ) from exc


def feature_matrix(
    bars: Bars, *, source: Literal["batch", "feast"] = "batch", fs: FeatureStore | None = None
) -> pd.DataFrame:
    """The features of every bar of ``bars`` (see the module docstring)."""
    if source == "batch":
        frame = compute_features(bars)
        frame.attrs = {}
        return frame
    if source != "feast":
        raise ConfigError(f"feature source must be 'batch' or 'feast', got {source!r}")
    if fs is None:
        raise ConfigError(
            "source='feast' needs a FeatureStore (raytrader.features.feast_repo.store)"
        )
    from raytrader.features import feast_repo as fr

    if not any(fr.offline_dir(fr.store_data_dir(fs)).glob("[!._]*.parquet")):
        raise ConfigError(
            f"Feast has no feature row for {bars.symbol} bar {bars.index[0].isoformat()}: its "
            f"offline store {fr.offline_dir(fr.store_data_dir(fs))} is empty"
        )
    closes = bars.index.tz_convert("UTC").as_unit("ns") + bars.timeframe.delta
    entity = pd.DataFrame(
        {fr.ENTITY: bars.symbol, fr.TIMEFRAME: bars.timeframe.name, fr.EVENT_TIMESTAMP: closes}
    )
    joined = fr.training_frame(fs, entity)
    opens = pd.DatetimeIndex(joined[fr.BAR_OPEN_TIME])
    missing = opens.isna() | (opens != bars.index)
    if missing.any():
        first = bars.index[int(np.argmax(missing))]
        raise ConfigError(
            f"Feast has no {bars.timeframe} feature row for {bars.symbol} bar "
            f"{first.isoformat()} ({int(missing.sum())} of {len(bars)} bars missing): write the "
            "offline rows first (`raytrader features backfill --data ...`)"
        )
    names = list(fr.FEATURE_NAMES)
    out = pd.DataFrame(joined[names].to_numpy(dtype=np.float64), index=bars.index, columns=names)
    out[WARM_COLUMN] = joined[WARM_COLUMN].to_numpy(dtype=bool)
    return out
