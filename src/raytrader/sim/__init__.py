"""The one simulation kernel shared by backtests, the RL environment and paper trading."""

from raytrader.sim.config import (
    AllIn,
    FixedFraction,
    KellyCapped,
    MarginConfig,
    SimConfig,
    VolTarget,
)
from raytrader.sim.engine import SimOutput, Simulator, simulate, trades_frame

__all__ = [
    "AllIn",
    "FixedFraction",
    "KellyCapped",
    "MarginConfig",
    "SimConfig",
    "SimOutput",
    "Simulator",
    "VolTarget",
    "simulate",
    "trades_frame",
]
