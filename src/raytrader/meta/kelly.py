"""Fractional Kelly sizing of the ensemble's position (optional).

The ensemble's direction and strength are ``Σ wᵢ·targetᵢ``; Kelly bounds its size by
``f = clip(κ · μ̂ / σ̂², 0, f_max)``, with ``μ̂`` the predicted return over the next bar and ``σ̂²``
an EWMA of the squared 1-bar returns (known at the bar). The position is
``sign(Σ wᵢ·targetᵢ) · min(|Σ wᵢ·targetᵢ|, f)``: Kelly only ever shrinks what the members agree on,
never flips or grows it, and a predicted edge against the direction (or none) sizes it to 0.

Why a fraction: under lognormal returns a fraction c of full Kelly earns c(2 - c) of the maximum
growth at c times the volatility (half Kelly: 75 % of the growth, half the volatility), and
overestimating μ̂ twice brings full Kelly's growth to zero — hence κ ≤ 0.5 in the presets and
``f_max`` ≤ 1 (no leverage).

A missing input (NaN edge or variance, no variance yet) gives NaN: no decision, the same rule as
a member without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from raytrader.config import StrictConfig


class KellyConfig(StrictConfig):
    fraction: float = Field(0.5, gt=0, le=1)  # κ
    max_position: float = Field(1.0, gt=0, le=1)  # f_max
    variance_halflife: float = Field(20.0, gt=0)  # bars, of the EWMA of squared returns


@dataclass(frozen=True)
class KellySize:
    position: float
    kelly: float  # f
    edge: float  # μ̂, signed toward the ensemble's direction
    variance: float  # σ̂²
    bound: bool  # True when f, not the members' agreement, set the size


class EwmaVariance:
    """An EWMA of squared 1-bar returns (zero mean), updated once per bar."""

    def __init__(self, halflife: float) -> None:
        self.alpha = 1.0 - 0.5 ** (1.0 / halflife)
        self.value: float = math.nan

    def update(self, r: float) -> float:
        if math.isfinite(r):
            sq = r * r
            self.value = (
                sq if math.isnan(self.value) else self.value + self.alpha * (sq - self.value)
            )
        return self.value


def kelly_size(combined: float, edge: float, variance: float, config: KellyConfig) -> KellySize:
    """Size ``combined`` (``Σ wᵢ·targetᵢ``, in [-1, 1]) by fractional Kelly on the predicted
    1-bar ``edge`` (a return, signed as a long position's) and ``variance``."""
    if not (math.isfinite(combined) and math.isfinite(edge) and math.isfinite(variance)):
        return KellySize(math.nan, math.nan, edge, variance, False)
    direction = math.copysign(1.0, combined) if combined != 0 else 0.0
    toward = edge * direction  # the predicted edge of the position the members want
    if direction == 0.0 or variance <= 0.0:
        return KellySize(0.0, 0.0, toward, variance, False)
    f = min(max(config.fraction * toward / variance, 0.0), config.max_position)
    size = min(abs(combined), f)
    return KellySize(direction * size, f, toward, variance, f < abs(combined))
