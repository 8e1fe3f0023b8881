"""A paper-trading session's settings: what it trades, where its decisions come from, the account
(the backtest's :class:`~raytrader.sim.SimConfig`) and its kill switch."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from raytrader.config import StrictConfig
from raytrader.data.timeframe import Timeframe
from raytrader.sim import SimConfig


class Member(StrictConfig):
    """A symbol of the session's universe and its weight (share of equity)."""

    symbol: str = Field(min_length=1, max_length=64)
    weight: float | None = Field(default=None, gt=0.0, le=1.0)


class StrategyDecisions(StrictConfig):
    """Decisions of a registered rule strategy, run in the trader on each symbol's bars so far (the
    backtest's targets, bar for bar)."""

    kind: Literal["strategy"] = "strategy"
    name: str = "ma_cross"
    params: dict[str, Any] = Field(default_factory=dict)


class ServiceDecisions(StrictConfig):
    """Decisions of the decision service (``POST /v1/decisions``) from the online store's features:
    a decision counts only once its ``feature_time`` is the bar's close (the stream job has
    written that bar's row); until then it is asked again, for at most ``feature_wait_s``."""

    kind: Literal["service"] = "service"
    #: the service's URL (default: RAYTRADER_SERVE_URL, or the local one)
    url: str | None = None
    feature_wait_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    poll_s: float = Field(default=0.25, gt=0.0, le=60.0)
    timeout_s: float = Field(default=5.0, gt=0.0, le=300.0)


Decisions = Annotated[StrategyDecisions | ServiceDecisions, Field(discriminator="kind")]


class KillSwitch(StrictConfig):
    """Limits that flatten every position and halt the session, with the rule that fired as its
    reason: the drawdown from the equity's peak, and the loss since the last close of the
    previous UTC day, both fractions of equity."""

    max_drawdown: float | None = Field(default=None, gt=0.0, lt=1.0)
    max_daily_loss: float | None = Field(default=None, gt=0.0, lt=1.0)


class PaperConfig(StrictConfig):
    """One session (``raytrader paper run --config``; a Helm value per session)."""

    #: the session's name: its ledger's key (running it again resumes it)
    session: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    symbols: list[Member] = Field(min_length=1, max_length=200)
    timeframe: str = "1d"
    decisions: Decisions = Field(default_factory=StrategyDecisions)
    sim: SimConfig = Field(default_factory=SimConfig)
    kill_switch: KillSwitch = Field(default_factory=KillSwitch)
    #: bars before it are history only (a strategy's warm-up), never traded
    start: AwareDatetime | None = None
    #: the session finishes after the bar that opens at or after it
    end: AwareDatetime | None = None

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        return Timeframe.parse(value).name

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _universe(self) -> PaperConfig:
        names = [m.symbol for m in self.symbols]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"symbol(s) {twice} appear more than once")
        given = [m.weight for m in self.symbols if m.weight is not None]
        if given and len(given) != len(self.symbols):
            raise ValueError("give every symbol a weight, or none (equal shares)")
        if sum(given) > 1.0 + 1e-9:
            raise ValueError(f"the weights sum to {sum(given):.6g}: at most 1")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must come after start")
        return self

    @property
    def names(self) -> list[str]:
        return [m.symbol for m in self.symbols]

    @property
    def weights(self) -> list[float]:
        if self.symbols[0].weight is None:
            return [1.0 / len(self.symbols)] * len(self.symbols)
        return [float(m.weight or 0.0) for m in self.symbols]
