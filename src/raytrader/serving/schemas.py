"""Request and response bodies of the decision API (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from raytrader.features.bar_features_v1 import BAR_FEATURES_V1

Symbol = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/^=-]{0,31}$")]
#: ``keep``: no decision (every member returned NaN for the row): keep the current position
Action = Literal["sell", "hold", "buy", "keep"]
#: a JSON number (strict: ``true``/``false`` or ``"1"`` are not numbers here), never NaN or inf
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Account(_Body):
    """A symbol's current position, as the RL members saw it in training (flat by default)."""

    symbol: Symbol
    #: position as a fraction of equity, -1 (all short) .. 1 (all long)
    position: FiniteFloat = Field(default=0.0, ge=-1.0, le=1.0)
    #: unrealized return of the open position
    unrealized: FiniteFloat = Field(default=0.0, ge=-1.0, le=10.0)
    #: bars the position has been held
    time_in_position: FiniteFloat = Field(default=0.0, ge=0.0, le=1e9)


class DecisionRequest(_Body):
    """``{"symbols": ["GOOG", {"symbol": "EURUSD", "position": 0.5}]}``: one decision per entry,
    in order (a symbol may appear twice, e.g. for two accounts holding different positions)."""

    symbols: list[Symbol | Account] = Field(min_length=1)

    def accounts(self) -> list[Account]:
        return [Account(symbol=s) if isinstance(s, str) else s for s in self.symbols]


#: every ``bar_features_v1`` feature, each required (null: not available yet), nothing else: the
#: schema lists the 70 names, so a client learns them from the OpenAPI document
_FEATURE_FIELDS: dict[str, Any] = {
    name: (FiniteFloat | None, Field(...)) for name in BAR_FEATURES_V1.names
}
FeatureValues: type[BaseModel] = create_model(
    "FeatureValues",
    __config__=ConfigDict(extra="forbid"),
    __doc__=f"The {len(BAR_FEATURES_V1.names)} features of {BAR_FEATURES_V1.name}, by name.",
    **_FEATURE_FIELDS,
)


#: the bar times the service takes (what its clock arithmetic represents exactly)
FIRST_YEAR, LAST_YEAR = 1970, 2199
_YEARS = r"^(19[7-9][0-9]|2[01][0-9][0-9])-"


class FeatureRow(Account):
    """One symbol's features, sent by a caller that computed them (``bar_features_v1``)."""

    features: FeatureValues
    #: whether every look-back behind the features was full
    warm: bool = Field(default=True, strict=True)
    #: the close time of the bar the features describe (timezone-aware, years 1970-2199)
    feature_time: datetime = Field(json_schema_extra={"pattern": _YEARS})

    @field_validator("feature_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("feature_time must carry a timezone (e.g. 2024-01-02T21:00:00Z)")
        if not FIRST_YEAR <= value.astimezone(UTC).year <= LAST_YEAR:
            raise ValueError(f"feature_time must lie in the years {FIRST_YEAR}-{LAST_YEAR}")
        return value


class FeaturesRequest(_Body):
    """``POST /v1/decisions:with-features``: the caller's own feature rows."""

    rows: list[FeatureRow] = Field(min_length=1)


class MemberRef(BaseModel):
    name: str
    version: int | None
    #: null for a meta ensemble (its weights change by bar: see the decision's explanation)
    weight: float | None


class MemberOutput(MemberRef):
    #: null: the member had no decision for this row (left out of the combination)
    target: float | None
    confidence: float | None


class ModelRef(BaseModel):
    name: str
    version: str


class Decision(BaseModel):
    symbol: str
    action: Action
    #: position to hold, -1 .. 1; null: no decision (action ``keep``: keep the current position)
    target: float | None
    confidence: float
    members: list[MemberOutput]
    #: members without a decision for this row, left out (the others' weights renormalized)
    members_missing: list[str] = Field(default_factory=list)
    model: ModelRef
    #: close time of the bar the features describe, and its age when decided
    feature_time: datetime
    feature_age_s: float
    #: the features are older than the age limit (only with ``stale: flag``; else a 503)
    stale: bool
    #: false while the feature look-backs were still filling (only with ``unwarm: flag``)
    warm: bool
    position: float
    #: a meta ensemble's reasons (regime, each member's score, weight and bound, the preset,
    #: binding constraints, Kelly inputs, predictor, fallback); null for other models
    explanation: dict[str, Any] | None = None


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
