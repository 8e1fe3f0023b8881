"""Bar messages on Kafka: a versioned JSON schema, validated when produced and when consumed.

One message is one closed bar::

    {"schema_version": 1, "symbol": "GOOG", "timeframe": "1d",
     "open_time": "2013-03-01T00:00:00+00:00", "open": 799.46, "high": 806.78, "low": 796.27,
     "close": 806.19, "volume": 2016900.0, "source": "bundled:goog", "calendar": "equity"}

``calendar`` (optional: ``equity``, ``fx`` or ``crypto``) is the symbol's market calendar when the
producer knows it (raytrader's replay and live producers always do); feature values do not depend
on it, but the bars a consumer keeps are annualized with it.

Topic ``bars.<timeframe>``, key = symbol (so one symbol's bars stay in order on one partition).
``open_time`` must carry a UTC offset (``Z`` or ``+00:00``); prices must be finite and positive,
``high >= max(open, close)``, ``low <= min(open, close)``, ``volume >= 0`` — the bars contract, per
message. :func:`decode` raises :class:`MessageError` with a reason for anything else; the consumer
sends such messages to the dead-letter topic ``bars.dlq``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field, ValidationError, field_validator, model_validator

from raytrader.config import StrictConfig, describe_validation_error
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import RaytraderError

SCHEMA_VERSION = 1
DLQ_TOPIC = "bars.dlq"


def topic_for(timeframe: str) -> str:
    return f"bars.{Timeframe.parse(timeframe).name}"


class MessageError(RaytraderError):
    """A message that cannot be accepted; ``reason`` says why (it travels to the DLQ)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BarMessage(StrictConfig):
    """Schema version 1 of a bar message."""

    schema_version: Literal[1] = 1
    symbol: str = Field(min_length=1, max_length=64)
    timeframe: str
    open_time: AwareDatetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    source: str = Field(default="unknown", max_length=200)
    calendar: Calendar | None = None

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return Timeframe.parse(value).name

    @field_validator("open_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _contract(self) -> BarMessage:
        prices = {"open": self.open, "high": self.high, "low": self.low, "close": self.close}
        for name, v in (*prices.items(), ("volume", self.volume)):
            if not math.isfinite(v):
                raise ValueError(f"{name} is not finite ({v})")
        for name, v in prices.items():
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {v}")
        if self.high < max(self.open, self.close):
            raise ValueError(f"high {self.high} < max(open, close) {max(self.open, self.close)}")
        if self.low > min(self.open, self.close):
            raise ValueError(f"low {self.low} > min(open, close) {min(self.open, self.close)}")
        if self.volume < 0:
            raise ValueError(f"volume must be >= 0, got {self.volume}")
        return self


def encode(msg: BarMessage) -> bytes:
    payload = msg.model_dump(mode="json")
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def decode(raw: bytes | None) -> BarMessage:
    """Parse and validate one message; :class:`MessageError` names the problem."""
    if raw is None:
        raise MessageError("empty message (tombstone)")
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MessageError(
            f"unsupported schema_version {version!r}; this consumer reads {SCHEMA_VERSION}"
        )
    try:
        return BarMessage.model_validate(data)
    except ValidationError as exc:
        raise MessageError(describe_validation_error(exc, "bar")) from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :class:`BarMessage` (for producers in other languages)."""
    return BarMessage.model_json_schema()
