"""Feature sinks for the streaming consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from raytrader.data.bars import Bars


class ParquetOfflineWriter:
    """The offline leg: rows appended as per-symbol part files of the Feast offline source under
    ``data`` (idempotent per symbol and event time; see :func:`append_offline_part`). Holds only a
    path, so it pickles to the consumer's writer process."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data)

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        from raytrader.features.feast_repo import append_offline_part, feature_rows

        rows = pd.concat([feature_rows(b, r) for b, r in items], ignore_index=True)
        append_offline_part(rows, self.data)


class FeastSink:
    """Writes feature rows to the Feast online store (each symbol's newest row) and the offline
    Parquet source (every row, as append-only parts compacted per symbol and timeframe on
    restore).

    Both legs are idempotent per (symbol, event time).
    """

    def __init__(self, fs: Any) -> None:
        from raytrader.features.feast_repo import store_data_dir

        self.fs = fs
        self.offline = ParquetOfflineWriter(store_data_dir(fs))

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        """The online store serves the latest row of each symbol, so only that row is written."""
        from raytrader.features.feast_repo import latest_rows, push

        push(self.fs, latest_rows(items), to="online")

    def offline_writer(self) -> ParquetOfflineWriter:
        return self.offline

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        self.offline.write_offline(items)

    def reconcile(self, symbol: str, timeframe: str, last_bar: pd.Timestamp) -> None:
        """Fold the consumer's parts into the symbol's file, dropping the part rows of bars after
        ``last_bar`` (written ahead of a crash; the replay rewrites them). Rows the batch path
        wrote are never dropped."""
        from raytrader.features.feast_repo import compact_offline

        compact_offline(symbol, timeframe, self.offline.data, drop_parts_after=last_bar)

    def online_bar_times(
        self, symbols: list[str], timeframe: str
    ) -> dict[str, pd.Timestamp | None]:
        from raytrader.features.feast_repo import BAR_OPEN_TIME, online_rows

        rows = online_rows(self.fs, symbols, timeframe)
        opens = rows[BAR_OPEN_TIME]
        return {str(s): (None if pd.isna(t) else t) for s, t in opens.items()}


class NullSink:
    """Discards rows (benchmarks of the consumer's own work)."""

    def write_online(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def write_offline(self, items: list[tuple[Bars, pd.DataFrame]]) -> None:
        return None

    def offline_writer(self) -> NullSink:
        return self

    def reconcile(self, symbol: str, timeframe: str, last_bar: pd.Timestamp) -> None:
        return None

    def online_bar_times(
        self, symbols: list[str], timeframe: str
    ) -> dict[str, pd.Timestamp | None]:
        return {}


def default_sink(redis: str | None = None, data: str | None = None) -> FeastSink:
    """The project's Feast repo with its Redis online store at ``redis`` and data dir ``data``
    (unset: from settings, :func:`raytrader.wiring.feature_store`)."""
    from raytrader import wiring

    return FeastSink(wiring.feature_store("redis", redis=redis, data=data))
