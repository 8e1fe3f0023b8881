"""Request and response bodies of the decision API (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Symbol = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/^=-]{0,31}$")]
Action = Literal["sell", "hold", "buy"]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Account(_Body):
    """A symbol's current position, as the RL members saw it in training (flat by default)."""

    symbol: Symbol
    #: position as a fraction of equity, -1 (all short) .. 1 (all long)
    position: float = Field(default=0.0, ge=-1.0, le=1.0, allow_inf_nan=False)
    #: unrealized return of the open position
    unrealized: float = Field(default=0.0, ge=-1.0, le=10.0, allow_inf_nan=False)
    #: bars the position has been held
    time_in_position: float = Field(default=0.0, ge=0.0, le=1e9, allow_inf_nan=False)


def _unique(items: list[Account]) -> list[Account]:
    seen = [a.symbol for a in items]
    doubled = sorted({s for s in seen if seen.count(s) > 1})
    if doubled:
        raise ValueError(f"symbols repeat: {doubled}")
    return items


class DecisionRequest(_Body):
    """``{"symbols": ["GOOG", {"symbol": "EURUSD", "position": 0.5}]}``"""

    symbols: list[Symbol | Account] = Field(min_length=1)

    @field_validator("symbols")
    @classmethod
    def _no_repeats(cls, value: list[str | Account]) -> list[str | Account]:
        _unique([Account(symbol=s) if isinstance(s, str) else s for s in value])
        return value

    def accounts(self) -> list[Account]:
        return [Account(symbol=s) if isinstance(s, str) else s for s in self.symbols]


class FeatureRow(Account):
    """One symbol's features, sent by a caller that computed them (``bar_features_v1``)."""

    #: every ``bar_features_v1`` feature by name (null: not available yet)
    features: dict[str, FiniteFloat | None]
    #: whether every look-back behind the features was full
    warm: bool = True
    #: the close time of the bar the features describe (timezone-aware)
    feature_time: datetime

    @field_validator("feature_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("feature_time must carry a timezone (e.g. 2024-01-02T21:00:00Z)")
        return value


class FeaturesRequest(_Body):
    """``POST /v1/decisions:with-features``: the caller's own feature rows."""

    rows: list[FeatureRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_repeats(self) -> FeaturesRequest:
        _unique(list(self.rows))
        return self


class MemberRef(BaseModel):
    name: str
    version: int | None
    weight: float | None


class MemberOutput(MemberRef):
    target: float
    confidence: float


class ModelRef(BaseModel):
    name: str
    version: str


class Decision(BaseModel):
    symbol: str
    action: Action
    #: position to hold, -1 .. 1
    target: float
    confidence: float
    members: list[MemberOutput]
    model: ModelRef
    #: close time of the bar the features describe, and its age when decided
    feature_time: datetime
    feature_age_s: float
    #: the features are older than ``max_feature_age_s`` (``stale: flag`` mode)
    stale: bool
    #: false while the feature look-backs were still filling
    warm: bool
    position: float


class DecisionResponse(BaseModel):
    decisions: list[Decision]
    model: ModelRef
    latency_ms: float


class ModelStatus(BaseModel):
    """What ``GET /v1/model`` reports (for the replica that answered)."""

    name: str
    uri: str
    version: str | None
    loaded_at: datetime | None
    checked_at: datetime | None
    swaps: int
    swap_failures: int
    last_failure: str | None
    failed_version: str | None
    members: list[MemberRef]
    replica: str


class Problem(BaseModel):
    """Every 4xx/5xx body."""

    detail: str
