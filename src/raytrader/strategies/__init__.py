"""Rule strategies, the registry, ensembles and the parallel runner.

Importing this package registers the built-in rules (:data:`raytrader.strategies.rules.BUILTIN`)
explicitly: the registry (:mod:`raytrader.strategies.base`) imports no strategy and the rules
import only the registry's base classes, so there is no import cycle. Importing any module of the
package (``raytrader.strategies.base`` included) runs this first.
"""

from raytrader.strategies.base import (
    INTERFACE_VERSION,
    Strategy,
    StrategyParams,
    get_strategy,
    make_strategy,
    register,
    strategy_names,
)
from raytrader.strategies.rules import BUILTIN

for _builtin in BUILTIN:
    register(_builtin)
del _builtin

__all__ = [
    "INTERFACE_VERSION",
    "Strategy",
    "StrategyParams",
    "get_strategy",
    "make_strategy",
    "register",
    "strategy_names",
]
