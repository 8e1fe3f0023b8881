"""Simulation settings shared by backtests, the RL environment and paper trading."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from raytrader.config import StrictConfig


class AllIn(StrictConfig):
    """Position = target x equity (target 1.0 puts all equity in)."""

    kind: Literal["all_in"] = "all_in"


class FixedFraction(StrictConfig):
    """Position = target x ``fraction`` x equity (a margin account caps the fraction at about
    1 / initial_margin, see :class:`MarginConfig`)."""

    kind: Literal["fixed_fraction"] = "fixed_fraction"
    fraction: float = Field(default=0.5, gt=0.0, le=10.0)


class VolTarget(StrictConfig):
    """Position = target x min(max_leverage, annual_vol / realized annual vol), capped by a margin
    account's initial margin.

    Realized volatility is the sample standard deviation (ddof=1) of the last ``lookback`` close-to-close
    returns known at decision time, annualized with the bars' periods per year.
    """

    kind: Literal["vol_target"] = "vol_target"
    annual_vol: float = Field(default=0.15, gt=0.0, le=5.0)
    lookback: int = Field(default=20, ge=2, le=10_000)
    max_leverage: float = Field(default=1.0, gt=0.0, le=10.0)


class KellyCapped(StrictConfig):
    """Position = target x clip(kelly_fraction x mean/variance, 0, cap), capped by a margin account's
    initial margin.

    Mean and variance (ddof=1) of the last ``lookback`` close-to-close returns known at decision time; for
    a short target the sign of the mean is flipped, so a negative edge sizes to zero.
    """

    kind: Literal["kelly"] = "kelly"
    lookback: int = Field(default=60, ge=2, le=10_000)
    kelly_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    cap: float = Field(default=1.0, gt=0.0, le=10.0)


Sizing = Annotated[AllIn | FixedFraction | VolTarget | KellyCapped, Field(discriminator="kind")]


class MarginConfig(StrictConfig):
    """A margin account: how much equity a position needs, when it is liquidated, and what borrowing
    costs. The defaults are a US retail broker's (Reg T initial margin, FINRA 4210 maintenance) with
    typical borrow and financing rates; every rate can be set to 0.

    * ``initial_margin``: equity needed to open or increase a position, as a fraction of its notional;
      the sizing fraction is capped at ``(1 + commission) / (initial_margin + commission)`` (a position
      opened from flat at the cap leaves equity = initial_margin x notional after its commission), so
      0.5 allows about 2x gross leverage, long or short, and 1.0 none. Larger orders are cut down.
    * ``maintenance_margin_long`` / ``_short``: when equity falls below this fraction of the position's
      notional, the position is liquidated (a margin call: at the open on a gap, else at the
      liquidation price inside the bar). The account keeps what is left and, as after a stop exit,
      trades again once the target changes; only a gap that leaves equity <= 0 ends it (bust).
    * ``borrow_rate``: annual fee for borrowing the shares of a short, charged every bar as
      ``borrow_rate / periods_per_year x |units| x close``.
    * ``financing_rate``: annual interest on the cash a leveraged long borrowed, charged every bar as
      ``financing_rate / periods_per_year x max(-cash, 0)``. Positive cash earns nothing.
    """

    #: Reg T: 50% of the purchase price (longs) and of the short sale's value (150% of it held)
    initial_margin: float = Field(default=0.5, gt=0.0, le=1.0)
    #: FINRA rule 4210's minimum for long stock
    maintenance_margin_long: float = Field(default=0.25, gt=0.0, lt=1.0)
    #: FINRA rule 4210's minimum for short stock at or above $5
    maintenance_margin_short: float = Field(default=0.30, gt=0.0, lt=1.0)
    #: easy-to-borrow ("general collateral") large caps; hard-to-borrow names cost far more
    borrow_rate: float = Field(default=0.003, ge=0.0, le=10.0)
    #: a retail broker's margin loan rate (about the policy rate plus a spread)
    financing_rate: float = Field(default=0.05, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _below_initial(self) -> MarginConfig:
        for name in ("maintenance_margin_long", "maintenance_margin_short"):
            value = getattr(self, name)
            if value >= self.initial_margin:
                raise ValueError(
                    f"{name} ({value}) must be below initial_margin ({self.initial_margin}): a "
                    "position opened at the initial margin would be liquidated at once"
                )
        return self


class SimConfig(StrictConfig):
    """How orders fill and cost. See the README section "Simulation semantics".

    ``margin`` (default: :class:`MarginConfig`'s retail account) caps leverage, liquidates positions
    below maintenance margin and charges borrow fees and financing; ``margin=None`` is a frictionless
    account with unlimited leverage, no carry costs, and liquidation only once equity at a close is
    <= 0.
    """

    initial_cash: float = Field(default=10_000.0, gt=0.0)
    commission: float = Field(
        default=0.001, ge=0.0, lt=0.1, description="fraction of traded notional, on every fill"
    )
    slippage_bps: float = Field(default=2.0, ge=0.0, lt=1000.0, description="adverse, per fill")
    fill: Literal["next_open", "close"] = "next_open"
    units: Literal["fractional", "whole"] = "fractional"
    sizing: Sizing = Field(default_factory=AllIn)
    stop_loss: float | None = Field(default=None, gt=0.0, lt=1.0)
    take_profit: float | None = Field(default=None, gt=0.0)
    allow_short: bool = True
    margin: MarginConfig | None = Field(default_factory=MarginConfig)

    @model_validator(mode="after")
    def _maintenance_covers_exit_costs(self) -> SimConfig:
        if self.margin is None:
            return self
        slip = self.slippage_bps / 10_000.0
        cost = slip + self.commission * (1.0 + slip)
        for name in ("maintenance_margin_long", "maintenance_margin_short"):
            value = getattr(self.margin, name)
            if value <= cost:
                raise ValueError(
                    f"margin.{name} ({value}) must exceed a liquidation's slippage + commission "
                    f"({cost:.6g}), or liquidating at the maintenance level would leave negative equity"
                )
        return self
