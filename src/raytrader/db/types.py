"""Column types shared by every table: timezone-aware UTC timestamps and JSON documents.

SQLite keeps no time zone, so :class:`UTCDateTime` refuses a naive value on the way in and marks
every value read back as UTC: the store hands out and accepts aware UTC datetimes on both
databases. JSON is PostgreSQL's ``JSONB`` there and SQLite's JSON text elsewhere; a non-finite
float is refused (JSON has no NaN, and a silently nulled metric is a wrong number).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from raytrader.errors import ExperimentStoreError

UTC = dt.UTC


class UTCDateTime(TypeDecorator[dt.datetime]):
    """``TIMESTAMP WITH TIME ZONE``; aware UTC in and out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ExperimentStoreError(
                f"naive datetime {value.isoformat()}: the store takes aware UTC times"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _check_finite(value: Any, where: str = "$") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ExperimentStoreError(
            f"JSON value at {where} is {value}: store None for a missing number"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


class Document(TypeDecorator[Any]):
    """A JSON document (``JSONB`` on PostgreSQL); NaN and infinities are refused."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        _check_finite(value)
        return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)
