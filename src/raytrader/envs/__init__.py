"""Trading environments on the shared simulation kernel (see :mod:`raytrader.envs.trading`)."""

from raytrader.envs.config import CostRandomization, EnvConfig
from raytrader.envs.market import Market
from raytrader.envs.normalize import FeatureNormalizer
from raytrader.envs.trading import TradingEnv, action_to_target
from raytrader.envs.vector import VectorTradingEnv

__all__ = [
    "CostRandomization",
    "EnvConfig",
    "FeatureNormalizer",
    "Market",
    "TradingEnv",
    "VectorTradingEnv",
    "action_to_target",
]
