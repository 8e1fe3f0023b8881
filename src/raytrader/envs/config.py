"""Trading-environment settings: strict, frozen, nameable from a config file or a CLI flag."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.errors import UnknownNameError
from raytrader.features import get_feature_set
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

    #: the feature set observed (a name ``raytrader.features.get_feature_set`` knows). The default
    #: stays ``bar_features_v1``: it is what the online store serves a registered policy, and
    #: earlier runs reproduce; ``bar_features_v2`` is the scale-free set
    feature_set: str = "bar_features_v1"
    #: observe only these features of the set, in this order (default: all of them, in the set's
    #: order). Episodes and splits do not move with the subset: a row is usable once the whole
    #: set is warm, so runs on different subsets trade the same bars
    features: tuple[str, ...] | None = None
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
        try:
            known = get_feature_set(self.feature_set).names
        except UnknownNameError as exc:
            raise ValueError(f"feature_set: {exc}") from None
        if self.features is not None:
            if not self.features:
                raise ValueError(
                    f"features: name at least one feature of {self.feature_set} "
                    "(or leave it out to observe all of them)"
                )
            unknown = [n for n in self.features if n not in known]
            if unknown:
                raise ValueError(
                    f"features: {', '.join(map(repr, unknown))} not in feature set "
                    f"{self.feature_set!r} (its features: {', '.join(known)})"
                )
            doubled = sorted({n for n in self.features if self.features.count(n) > 1})
            if doubled:
                raise ValueError(f"features: {doubled} named more than once")
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The observed features, in observation order."""
        if self.features is not None:
            return self.features
        return tuple(get_feature_set(self.feature_set).names)
