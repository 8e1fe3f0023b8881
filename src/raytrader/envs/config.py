"""Trading-environment settings: strict, frozen, nameable from a config file or a CLI flag."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.sim.config import SimConfig

ScenarioName = Literal["flash_crash", "low_liquidity", "extreme_volatility"]
ActionKind = Literal["discrete", "grid", "continuous"]
RewardKind = Literal["log_return", "risk_penalized", "differential_sharpe"]


class CostRandomization(StrictConfig):
    """Per episode, commission and slippage are drawn uniformly from these closed ranges."""

    commission: tuple[float, float] = (0.0005, 0.002)
    slippage_bps: tuple[float, float] = (1.0, 10.0)

    @model_validator(mode="after")
    def _ranges(self) -> CostRandomization:
        for name in ("commission", "slippage_bps"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} range must satisfy 0 <= low <= high, got ({lo}, {hi})")
        if self.commission[1] >= 0.1:
            raise ValueError("commission must stay below 0.1 (10% of notional)")
        return self


class EnvConfig(StrictConfig):
    """How the environment acts, rewards and samples episodes (see :mod:`raytrader.envs`)."""

    action: ActionKind = "discrete"
    #: target positions of the ``grid`` action space: ``linspace(-1, 1, grid_levels)``
    grid_levels: int = Field(default=5, ge=3, le=101)
    reward: RewardKind = "log_return"
    #: ``risk_penalized``: reward = log return - risk_lambda x penalty
    risk_penalty: Literal["volatility", "drawdown"] = "volatility"
    risk_lambda: float = Field(default=0.1, ge=0.0)
    #: ``volatility`` penalty: std of the episode's last ``risk_window`` log returns
    risk_window: int = Field(default=20, ge=2)
    #: ``differential_sharpe``: the moving averages' adaptation rate (Moody & Saffell's eta)
    dsr_eta: float = Field(default=0.01, gt=0.0, lt=1.0)
    episode_length: int = Field(default=256, ge=2)
    #: start each episode at a uniformly random bar of the split (else at its first warm bar)
    random_start: bool = True
    sim: SimConfig = Field(default_factory=SimConfig)
    cost_randomization: CostRandomization | None = None
    #: stress scenarios mixed into training: each episode uses one with ``scenario_probability``
    scenarios: tuple[ScenarioName, ...] = ()
    scenario_probability: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> EnvConfig:
        if self.sim.fill != "next_open":
            raise ValueError(
                "the environment acts on the close it observed, so orders fill at the next open: "
                "sim.fill must be 'next_open'"
            )
        if self.scenario_probability > 0.0 and not self.scenarios:
            raise ValueError("scenario_probability > 0 needs at least one name in scenarios")
        return self
