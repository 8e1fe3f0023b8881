"""raytrader: train, tune, backtest and serve ensembles of trading strategies on Ray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raytrader")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
