"""Rule strategies, the registry, ensembles and the parallel runner."""

from raytrader.strategies.base import (
    INTERFACE_VERSION,
    Strategy,
    StrategyParams,
    get_strategy,
    make_strategy,
    register,
    strategy_names,
)

__all__ = [
    "INTERFACE_VERSION",
    "Strategy",
    "StrategyParams",
    "get_strategy",
    "make_strategy",
    "register",
    "strategy_names",
]
