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

    def write_online(self, bars: Bars, rows: pd.DataFrame) -> None:
        from raytrader.features.feast_repo import feature_rows, push

        push(self.fs, feature_rows(bars, rows), to="online")

    def write_offline(self, bars: Bars, rows: pd.DataFrame) -> None:
        from raytrader.features.feast_repo import append_offline, feature_rows, store_data_dir

        append_offline(feature_rows(bars, rows), store_data_dir(self.fs))


class NullSink:
    """Discards rows (benchmarks of the consumer's own work)."""

    def write_online(self, bars: Bars, rows: pd.DataFrame) -> None:
        return None

    def write_offline(self, bars: Bars, rows: pd.DataFrame) -> None:
        return None


def default_sink(redis: str) -> FeastSink:
    """The project's Feast repo with its Redis online store at ``redis``."""
    from raytrader.features.feast_repo import store

    return FeastSink(store("redis", redis=redis))
