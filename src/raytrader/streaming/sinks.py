"""Feature sinks for the streaming consumer."""

from __future__ import annotations

from typing import Any

import pandas as pd

from raytrader.data.bars import Bars


class FeastSink:
    """Writes feature rows to the Feast online store (push) and the offline Parquet source.

    Both legs are idempotent per (symbol, event time): the online store keeps the latest row per
    symbol, and the offline files are rewritten by key (:func:`raytrader.features.feast_repo.
    append_offline`).
    """

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        from raytrader.features.feast_repo import push

        push(self.fs, self._rows(items), to="online")

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


class NullSink:
    """Discards rows (benchmarks of the consumer's own work)."""

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def reconcile(self, symbol: str, last_bar: pd.Timestamp | None) -> None:
        return None


def default_sink(redis: str) -> FeastSink:
    """The project's Feast repo with its Redis online store at ``redis``."""
    from raytrader.features.feast_repo import store

    return FeastSink(store("redis", redis=redis))
