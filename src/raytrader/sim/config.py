"""Simulation settings shared by backtests, the RL environment and paper trading."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from raytrader.config import StrictConfig


class AllIn(StrictConfig):
    """Position = target x equity (target 1.0 puts all equity in)."""

    kind: Literal["all_in"] = "all_in"


class FixedFraction(StrictConfig):
    """Position = target x ``fraction`` x equity."""

    kind: Literal["fixed_fraction"] = "fixed_fraction"
    fraction: float = Field(default=0.5, gt=0.0, le=10.0)


class VolTarget(StrictConfig):
    """Position = target x min(max_leverage, annual_vol / realized annual vol).

    Realized volatility is the sample standard deviation (ddof=1) of the last ``lookback`` close-to-close
    returns known at decision time, annualized with the bars' periods per year.
    """

    kind: Literal["vol_target"] = "vol_target"
    annual_vol: float = Field(default=0.15, gt=0.0, le=5.0)
    lookback: int = Field(default=20, ge=2, le=10_000)
    max_leverage: float = Field(default=1.0, gt=0.0, le=10.0)


class KellyCapped(StrictConfig):
    """Position = target x clip(kelly_fraction x mean/variance, 0, cap).

    Mean and variance (ddof=1) of the last ``lookback`` close-to-close returns known at decision time; for
    a short target the sign of the mean is flipped, so a negative edge sizes to zero.
    """

    kind: Literal["kelly"] = "kelly"
    lookback: int = Field(default=60, ge=2, le=10_000)
    kelly_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    cap: float = Field(default=1.0, gt=0.0, le=10.0)


Sizing = Annotated[AllIn | FixedFraction | VolTarget | KellyCapped, Field(discriminator="kind")]


class SimConfig(StrictConfig):
    """How orders fill and cost. See the README section "Simulation semantics"."""

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
