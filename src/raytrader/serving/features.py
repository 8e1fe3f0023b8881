"""The latest ``ensemble_v1`` row of each symbol at the service's timeframe, read from the Feast
online store with the SDK.

:func:`raytrader.features.feast_repo.online_rows`: Feast's online-store read, returning the same
frame as the SDK's ``get_online_features`` (:func:`~raytrader.features.feast_repo.online_features`;
a test compares them) in a fraction of the time. Inline features (``:with-features``) are checked
against the same feature list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from raytrader.serving.config import ServiceConfig

PROBE_SYMBOL = "__raytrader_readyz__"


class OnlineFeatures:
    """A Feast store opened once per process (lazily: building it connects to nothing)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._store: Any = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from raytrader.features import feast_repo

                self._store = feast_repo.store(
                    self.config.feast_profile, data=self.config.feast_data, redis=self.config.redis
                )
            return self._store

    def latest(self, symbols: Sequence[str]) -> tuple[pd.DataFrame, float]:
        """Rows indexed by symbol (a symbol never written has a null ``event_timestamp``) and the
        read's duration in seconds."""
        from raytrader.features import feast_repo

        t0 = time.perf_counter()
        rows = feast_repo.online_rows(self.store, list(symbols), self.config.timeframe)
        return rows, time.perf_counter() - t0

    def ping(self) -> str | None:
        """None when the online store answers, else why not."""
        try:
            self.latest([PROBE_SYMBOL])
        except Exception as exc:  # any failure means not ready; say which
            return f"Feast online store ({self.config.feast_profile}): {type(exc).__name__}: {exc}"
        return None


class OfflineHistory:
    """A symbol's stored rows between two feature times, from the Feast offline store (the
    Parquet files the stream job appends to): where a meta ensemble's state catches up on bars
    it did not decide (:mod:`raytrader.meta.model`)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config

    def __call__(
        self, symbol: str, after: pd.Timestamp | None, before: pd.Timestamp
    ) -> pd.DataFrame:
        from raytrader.ensemble import decision_frame, keyed
        from raytrader.features import feast_repo

        rows = feast_repo.read_offline(
            symbol, self.config.feast_data, timeframe=self.config.timeframe
        )
        times = rows[feast_repo.EVENT_TIMESTAMP]
        keep = times < before
        if after is not None:
            keep &= times > after
        picked = rows[keep.to_numpy()].sort_values(feast_repo.EVENT_TIMESTAMP)
        return decision_frame(keyed(picked.set_index(feast_repo.ENTITY)))


def inline_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """``:with-features`` rows (validated against the schema, which names every feature) as the
    frame :func:`OnlineFeatures.latest` returns."""
    from raytrader.features import feast_repo
    from raytrader.features.engine import WARM_COLUMN

    names = feast_repo.FEATURE_NAMES
    records = []
    for row in rows:
        given = row.features.model_dump()  # the schema already required every name
        rec = {n: (float("nan") if given[n] is None else given[n]) for n in names}
        rec[WARM_COLUMN] = row.warm
        rec[feast_repo.EVENT_TIMESTAMP] = pd.Timestamp(row.feature_time).tz_convert("UTC")
        rec[feast_repo.ENTITY] = row.symbol
        records.append(rec)
    return pd.DataFrame.from_records(records).set_index(feast_repo.ENTITY)
