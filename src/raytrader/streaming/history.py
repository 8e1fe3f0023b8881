"""The persisted bar history of each symbol: the state a feature consumer restores after a restart.

One Parquet file per (symbol, timeframe) under ``<state_dir>/bars/``, rewritten atomically (temp
file + rename) after each micro-batch, so a crash leaves either the old or the new history.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from raytrader.data.bars import OHLCV, Bars
from raytrader.data.timeframe import Calendar, Timeframe


class BarHistory:
    def __init__(
        self,
        state_dir: str | Path,
        timeframe: str | Timeframe,
        calendar: Calendar | str = Calendar.CRYPTO,
    ) -> None:
        self.root = Path(state_dir) / "bars"
        self.timeframe = Timeframe.parse(timeframe)
        self.calendar = Calendar(calendar)

    def path(self, symbol: str) -> Path:
        return self.root / f"{quote(symbol, safe='')}.{self.timeframe.name}.parquet"

    def load(self, symbol: str) -> Bars | None:
        p = self.path(symbol)
        if not p.exists():
            return None
        frame = pd.read_parquet(p)
        frame.index = pd.DatetimeIndex(frame.index)
        return Bars.from_frame(
            frame[list(OHLCV)],
            symbol=symbol,
            timeframe=self.timeframe,
            calendar=self.calendar,
            source=str(p),
        )

    def save(self, bars: Bars) -> None:
        p = self.path(bars.symbol)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        bars.frame.to_parquet(tmp)
        tmp.replace(p)
