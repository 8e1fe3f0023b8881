"""Feature sinks for the streaming consumer."""

from __future__ import annotations

from typing import Any

import pandas as pd

from raytrader.data.bars import Bars


class FeastSink:
    """Writes feature rows to the Feast online store (push of each symbol's newest row) and the
    offline Parquet source (every row, as append-only parts compacted per symbol on restore).

    Both legs are idempotent per (symbol, event time).
    """

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        """The online store serves the latest row of each symbol, so only that row is pushed
        (Feast's Python writer costs a protobuf per feature per row)."""
        from raytrader.features.feast_repo import push

        latest = [(b.head_mask(_last_only(len(b))), r.iloc[-1:]) for b, r in items]
        push(self.fs, self._rows(latest), to="online")

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        from raytrader.features.feast_repo import append_offline_part, store_data_dir

        append_offline_part(self._rows(items), store_data_dir(self.fs))

    def reconcile(self, symbol: str, last_bar: pd.Timestamp | None) -> None:
        from raytrader.features.feast_repo import compact_offline, store_data_dir

        cutoff = last_bar if last_bar is not None else pd.Timestamp.min.tz_localize("UTC")
        compact_offline(symbol, store_data_dir(self.fs), drop_after=cutoff)

    def _rows(self, items: list[tuple[Bars, pd.DataFrame]]) -> pd.DataFrame:
        from raytrader.features.feast_repo import feature_rows

        return pd.concat([feature_rows(b, r) for b, r in items], ignore_index=True)


def _last_only(n: int) -> Any:
    import numpy as np

    mask = np.zeros(n, dtype=bool)
    mask[-1] = True
    return mask


class NullSink:
    """Discards rows (benchmarks of the consumer's own work)."""

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def reconcile(self, symbol: str, last_bar: pd.Timestamp | None) -> None:
        return None


def default_sink(redis: str, data: str | None = None) -> FeastSink:
    """The project's Feast repo with its Redis online store at ``redis`` and data dir ``data``."""
    from raytrader.features.feast_repo import store

    return FeastSink(store("redis", redis=redis, data=data))
