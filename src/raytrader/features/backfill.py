"""Populate Feast from bars: every bar's feature row offline, the newest one online.

``raytrader features backfill --data ...`` (and the demo) use it, so a user can train from Feast's
point-in-time join or serve a symbol before any bar has been streamed. The rows are the batch
engine's (:func:`~raytrader.features.compute_features`), which the streaming consumer equals bit
for bit; offline they go to the symbol's compacted file (:func:`~raytrader.features.feast_repo.
append_offline`, idempotent per key), which the consumer's reconciliation never drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from raytrader.data.bars import Bars
from raytrader.features.bar_features_v1 import BAR_FEATURES_V1
from raytrader.features.engine import WARM_COLUMN, compute_features


@dataclass(frozen=True)
class BackfillResult:
    symbol: str
    timeframe: str
    rows: int
    warm_rows: int
    first_bar: pd.Timestamp
    last_bar: pd.Timestamp
    online: pd.Series  # the row read back from the online store

    def summary(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "rows": self.rows,
            "warm_rows": self.warm_rows,
            "first_bar": self.first_bar.isoformat(),
            "last_bar": self.last_bar.isoformat(),
            "online_bar": self.online["bar_open_time"].isoformat(),
            "online_warm": bool(self.online[WARM_COLUMN]),
        }


def backfill(fs: Any, bars: Bars, *, apply_repo: bool = True) -> BackfillResult:
    """Write ``bars``' ``bar_features_v1`` rows offline and the newest online; read it back."""
    from raytrader.features import feast_repo as fr

    if apply_repo:
        fr.apply(fs)
    feats = compute_features(bars, BAR_FEATURES_V1)
    rows = fr.feature_rows(bars, feats)
    # the online store first: if it cannot be reached, nothing has been written
    fr.push(fs, rows.tail(1), to="online")
    fr.append_offline(rows, fr.store_data_dir(fs))
    online = fr.online_features(fs, [bars.symbol], bars.timeframe.name).iloc[0]
    return BackfillResult(
        symbol=bars.symbol,
        timeframe=bars.timeframe.name,
        rows=len(rows),
        warm_rows=int(feats[WARM_COLUMN].sum()),
        first_bar=bars.index[0],
        last_bar=bars.index[-1],
        online=online,
    )
