"""The persisted bar history of each symbol: the state a feature consumer restores after a restart.

Per (symbol, timeframe) under ``<state_dir>/bars/``: new bars are appended as part files (O(batch),
written atomically: temp file + rename) and folded into one file once ``max_parts`` accumulate. A
crash leaves whole parts only; a bar present in two files (a crash between folding and deleting)
counts once. Writes are durable (fsync of the file and the directory) before the consumer commits.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd

from raytrader.contract import OHLCV
from raytrader.data.atomic import fsync_dir, write_parquet_atomic
from raytrader.data.bars import Bars
from raytrader.data.timeframe import Calendar, Timeframe


class BarHistory:
    def __init__(
        self,
        state_dir: str | Path,
        timeframe: str | Timeframe,
        calendar: Calendar | str = Calendar.CRYPTO,
        max_parts: int = 32,
    ) -> None:
        self.root = Path(state_dir) / "bars"
        self.timeframe = Timeframe.parse(timeframe)
        self.calendar = Calendar(calendar)
        self.max_parts = max_parts

    def symbols(self) -> list[str]:
        """The symbols with a persisted history at this timeframe."""
        suffix = f".{self.timeframe.name}"
        names = set()
        for f in self.root.glob(f"*{suffix}*.parquet") if self.root.is_dir() else ():
            stem = f.name.split(".part-")[0].removesuffix(".parquet")
            if stem.endswith(suffix):
                names.add(unquote(stem.removesuffix(suffix)))
        return sorted(names)

    def path(self, symbol: str) -> Path:
        return self.root / f"{quote(symbol, safe='')}.{self.timeframe.name}.parquet"

    def _parts(self, symbol: str) -> list[Path]:
        main = self.path(symbol)
        return sorted(main.parent.glob(f"{main.stem}.part-*.parquet"))

    def _read(self, symbol: str) -> pd.DataFrame | None:
        for attempt in range(3):
            files = [p for p in [self.path(symbol), *self._parts(symbol)] if p.exists()]
            if not files:
                return None
            try:
                frames = [pd.read_parquet(f) for f in files]
                break
            except FileNotFoundError:  # compacted meanwhile (another writer): list them again
                if attempt == 2:
                    raise
        frame = pd.concat(frames)
        frame.index = pd.DatetimeIndex(frame.index)
        frame = frame[~frame.index.duplicated(keep="first")].sort_index()
        return frame[list(OHLCV)]

    def load(self, symbol: str, calendar: Calendar | str | None = None) -> Bars | None:
        frame = self._read(symbol)
        if frame is None:
            return None
        return Bars.from_frame(
            frame,
            symbol=symbol,
            timeframe=self.timeframe,
            calendar=self.calendar if calendar is None else calendar,
            source=str(self.path(symbol)),
        )

    def _write(self, frame: pd.DataFrame, final: Path) -> None:
        import pyarrow as pa

        final.parent.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(pa.Table.from_pandas(frame), final, what="bar history")
        fsync_dir(final.parent)

    def append(self, bars: Bars) -> None:
        """Persist ``bars`` (new bars of one symbol, newer than anything stored)."""
        main = self.path(bars.symbol)
        first, last = bars.index[0].value, bars.index[-1].value
        part = main.with_name(
            f"{main.stem}.part-{first:019d}-{last:019d}-{uuid.uuid4().hex[:8]}.parquet"
        )
        self._write(bars.frame, part)
        if len(self._parts(bars.symbol)) >= self.max_parts:
            self.compact(bars.symbol)

    def compact(self, symbol: str) -> None:
        parts = self._parts(symbol)
        frame = self._read(symbol)
        if frame is None:
            return
        self._write(frame, self.path(symbol))
        for p in parts:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
