"""Feast objects of the raytrader feature repo (read by ``feast apply`` and by raytrader).

One feature view, ``bar_features_v1``: the 70 float64 features of
:data:`raytrader.features.BAR_FEATURES_V1`, its boolean ``warm`` flag and ``bar_open_time``, keyed by
two entities, ``symbol`` and ``timeframe``: a row is one bar of one symbol at one bar length, so the
1m and 1d rows of BTC/USDT never overwrite each other offline or online, and every reader names the
timeframe it wants. The schema is generated from the feature set itself, so it cannot drift from
what :func:`raytrader.features.compute_features` produces (a test checks the names).

**Event timestamp = bar CLOSE time.** A bar is stamped by its open time, but its features are only
known once it has closed, so a feature row's ``event_timestamp`` is ``bar open time + timeframe``
(``bar_open_time`` carries the open time as a feature). Feast's point-in-time join returns, for an
entity row at time t, the latest feature row with ``event_timestamp <= t``: a time inside a bar gets
the previous (closed) bar's features, a time exactly at a close gets the bar that just closed. Using
the open time instead would leak the whole bar (its close, high, low, volume) into training rows.
Rows are built by :func:`raytrader.features.feast_repo.feature_rows`; nothing else should write them.

Sources: the batch (offline) source is a directory of Parquet files, one per symbol and timeframe, written
idempotently by :func:`raytrader.features.feast_repo.append_offline`; the push source
``bar_features_v1_push`` carries it and is the live path (the stream job pushes each closed bar).

TTL (7 days): how far back the point-in-time join looks for a row (and where
``materialize_incremental`` starts on a fresh view). It must exceed the longest gap between two closes
of the coarsest bars served — a long weekend plus a holiday for daily equity bars is 4 days — and is
short enough that a symbol that stopped updating gets nulls in training rows after a week instead of
stale features. Feast does not apply it to online reads (the online store serves the last row
whatever its age), so consumers that need "this exact bar" compare ``bar_open_time`` (or the event
time ``online_features`` returns) with the bar they expect.

The data dir comes from ``RAYTRADER_FEAST_DATA`` (see feature_store.yaml); raytrader's Python layer
builds the same objects for an explicit data dir with :func:`build`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Bool, Float64, String, UnixTimestamp

from raytrader.features import BAR_FEATURES_V1, WARM_COLUMN
from raytrader.features.feast_repo import (
    BAR_OPEN_TIME,
    CREATED,
    ENTITY,
    EVENT_TIMESTAMP,
    FEATURE_SERVICE,
    FEATURE_VIEW,
    PUSH_SOURCE,
    TIMEFRAME,
    Definitions,
    data_dir,
    offline_dir,
)

TTL = timedelta(days=7)


def build(data: Path) -> Definitions:
    """The repo's objects with the offline Parquet files under ``data`` (an absolute data dir)."""
    symbol = Entity(
        name=ENTITY,
        join_keys=[ENTITY],
        value_type=ValueType.STRING,
        description="Instrument symbol as raytrader names it (Bars.symbol), e.g. GOOG, BTC/USDT.",
    )
    timeframe = Entity(
        name=TIMEFRAME,
        join_keys=[TIMEFRAME],
        value_type=ValueType.STRING,
        description="Bar length as raytrader names it (Timeframe.name), e.g. 1m, 1h, 1d.",
    )
    batch_source = FileSource(
        name=f"{FEATURE_VIEW}_source",
        path=str(offline_dir(data)),
        file_format=ParquetFormat(),
        timestamp_field=EVENT_TIMESTAMP,
        created_timestamp_column=CREATED,
        description="One Parquet file per symbol and timeframe; event_timestamp is the bar CLOSE.",
    )
    push_source = PushSource(
        name=PUSH_SOURCE,
        batch_source=batch_source,
        description="Live path: the stream job pushes each closed bar's feature row.",
    )
    schema = [
        Field(name=ENTITY, dtype=String),
        Field(name=TIMEFRAME, dtype=String),
        *(
            Field(name=spec.name, dtype=Float64, description=spec.description)
            for spec in BAR_FEATURES_V1.features
        ),
        Field(name=WARM_COLUMN, dtype=Bool, description="every feature is past its warm-up"),
        Field(name=BAR_OPEN_TIME, dtype=UnixTimestamp, description="open time of the bar (UTC)"),
    ]
    view = FeatureView(
        name=FEATURE_VIEW,
        entities=[symbol, timeframe],
        ttl=TTL,
        schema=schema,
        source=push_source,
        online=True,
        description=BAR_FEATURES_V1.description,
        tags={"feature_set": BAR_FEATURES_V1.name},
    )
    service = FeatureService(
        name=FEATURE_SERVICE,
        features=[view],
        description="What the ensemble's models read: every bar_features_v1 feature.",
    )
    return Definitions(
        entity=symbol,
        timeframe=timeframe,
        batch_source=batch_source,
        push_source=push_source,
        feature_view=view,
        feature_service=service,
    )


# module-level objects for `feast apply` (it collects every Feast object bound in the repo's modules)
(
    symbol,
    timeframe,
    bar_features_v1_source,
    bar_features_v1_push,
    bar_features_v1,
    ensemble_v1,
) = build(data_dir())
