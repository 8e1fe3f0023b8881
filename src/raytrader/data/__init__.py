"""Market data: the bars contract, loaders, resampling and the Parquet store."""

from raytrader.contract import OHLCV
from raytrader.data.bars import Bars, RepairReport, validate
from raytrader.data.sources import dataset_names, load_bars
from raytrader.data.timeframe import Calendar, Timeframe

__all__ = [
    "OHLCV",
    "Bars",
    "Calendar",
    "RepairReport",
    "Timeframe",
    "dataset_names",
    "load_bars",
    "validate",
]
