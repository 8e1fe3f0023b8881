"""An append-only Parquet store of bars, partitioned by symbol and timeframe.

Layout (hive-style directories, one Parquet file per appended chunk)::

    root/symbol=<url-quoted symbol>/timeframe=<timeframe>/part-<first_ns>-<last_ns>.parquet

The symbol is percent-encoded with :func:`urllib.parse.quote` (``safe=""``), so ``BTC/USDT`` lives
in ``symbol=BTC%2FUSDT``. ``first_ns``/``last_ns`` are the first and last bar open times of the part
in integer nanoseconds since the epoch (zero-padded to 19 digits), which lets
:meth:`ParquetStore.last_timestamp` and range reads prune parts from file names alone. The
timeframe key is the timeframe's canonical name (``60m`` and ``1h`` are different keys).

Each part holds a ``timestamp`` column of type ``timestamp[us, tz=UTC]`` (bar open times,
microsecond resolution, pandas' default; bars with sub-microsecond open times are refused) and
float64 ``open, high, low, close, volume`` columns. :meth:`ParquetStore.read` returns a
``datetime64[us, UTC]`` index. The schema metadata key ``raytrader`` holds JSON
with the symbol, timeframe and calendar, so :meth:`ParquetStore.read` restores the calendar.

Rules:

* **Append-only, strictly increasing**: :meth:`ParquetStore.append` refuses (``StoreError``) bars
  whose first timestamp is ``<=`` the stored last timestamp (overlap or out-of-order chunk), and
  bars whose calendar differs from the stored one. Nothing is written when it refuses.
* **Atomic writes**: a part is written to a hidden temporary file (``.part-*.tmp``) in its final
  directory, flushed and fsynced, then renamed into place with :func:`os.replace`. A crash leaves at
  most a hidden temporary file, which every read ignores; a visible part is always complete.
* **Single writer per key**: the overlap check and the rename are not one transaction, so two
  processes appending to the same symbol/timeframe at once must be serialized by the caller.
* **Reads** take ``start`` (inclusive) and ``end`` (exclusive), timezone-aware (converted to UTC);
  a naive timestamp or ``end <= start`` raises ``ConfigError``. Reading a key with nothing stored
  raises ``StoreError``, and so does a range that holds no bars ("no bars in range"): a
  :class:`Bars` is never empty.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from raytrader.contract import OHLCV
from raytrader.data.atomic import fsync_dir, write_parquet_atomic
from raytrader.data.bars import Bars, make_frame
from raytrader.data.timeframe import Calendar, Timeframe
from raytrader.errors import ConfigError, StoreError

_PART_RE = re.compile(r"^part-(-?\d+)-(-?\d+)\.parquet$")
_META_KEY = b"raytrader"
_TS_TYPE = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [pa.field("timestamp", _TS_TYPE, nullable=False)]
    + [pa.field(c, pa.float64(), nullable=False) for c in OHLCV]
)

TimeLike = pd.Timestamp | datetime | str


def _utc(value: TimeLike, what: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ConfigError(f"{what} {value!r} is timezone-naive; pass a timezone-aware (UTC) time")
    return ts.tz_convert("UTC")


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


class ParquetStore:
    """Bars stored under ``root`` (created on first append); see the module docstring."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ParquetStore({str(self.root)!r})"

    # ----------------------------------------------------------------- layout
    def key_dir(self, symbol: str, timeframe: str | Timeframe) -> Path:
        """The directory holding the parts of ``symbol`` at ``timeframe``."""
        if not symbol:
            raise ConfigError("symbol must be a non-empty string")
        tf = Timeframe.parse(timeframe)
        return self.root / f"symbol={quote(symbol, safe='')}" / f"timeframe={tf.name}"

    def _part_spans(self, directory: Path) -> list[tuple[int, int, Path]]:
        if not directory.is_dir():
            return []
        spans = []
        for entry in directory.iterdir():
            m = _PART_RE.match(entry.name)
            if m and entry.is_file():
                spans.append((int(m.group(1)), int(m.group(2)), entry))
        spans.sort()
        return spans

    def parts(self, symbol: str, timeframe: str | Timeframe) -> list[Path]:
        """The visible part files of a key, oldest first (hidden temporary files excluded)."""
        return [p for _, _, p in self._part_spans(self.key_dir(symbol, timeframe))]

    def symbols(self) -> list[tuple[str, str]]:
        """Every stored ``(symbol, timeframe)`` key that has at least one part, sorted."""
        keys: list[tuple[str, str]] = []
        if not self.root.is_dir():
            return keys
        for sym_dir in self.root.glob("symbol=*"):
            for tf_dir in sym_dir.glob("timeframe=*"):
                if tf_dir.is_dir() and self._part_spans(tf_dir):
                    symbol = unquote(sym_dir.name.removeprefix("symbol="))
                    keys.append((symbol, tf_dir.name.removeprefix("timeframe=")))
        return sorted(keys)

    def last_timestamp(self, symbol: str, timeframe: str | Timeframe) -> pd.Timestamp | None:
        """Open time of the last stored bar (from part file names; no data read), or ``None``."""
        spans = self._part_spans(self.key_dir(symbol, timeframe))
        return _ts(max(last for _, last, _ in spans)) if spans else None

    def _stored_meta(self, path: Path) -> dict[str, Any]:
        try:
            meta = pq.read_schema(path).metadata or {}
            parsed = json.loads(meta[_META_KEY])
        except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
            raise StoreError(f"corrupt partition {path}: cannot read its metadata ({exc})") from exc
        if not isinstance(parsed, dict):
            raise StoreError(f"corrupt partition {path}: metadata is not a JSON object")
        return parsed

    # ----------------------------------------------------------------- write
    def append(self, bars: Bars) -> Path:
        """Write ``bars`` as a new part after the stored ones; returns the part's path."""
        directory = self.key_dir(bars.symbol, bars.timeframe)
        spans = self._part_spans(directory)
        ns = bars.index.as_unit("ns").asi8
        first_ns, last_ns = int(ns[0]), int(ns[-1])
        key = f"{bars.symbol} {bars.timeframe.name}"
        sub_us = np.flatnonzero(ns % 1000)
        if sub_us.size:
            raise StoreError(
                f"refusing to append {key}: {sub_us.size} timestamp(s) have sub-microsecond "
                f"precision (first: {_ts(int(ns[sub_us[0]])).isoformat()}); the store keeps "
                "microseconds"
            )
        if spans:
            stored_last = max(last for _, last, _ in spans)
            if first_ns <= stored_last:
                kind = "overlaps" if last_ns >= stored_last else "is out of order with"
                raise StoreError(
                    f"refusing to append {key}: new bars start at {_ts(first_ns).isoformat()}, "
                    f"which {kind} the stored bars ending at {_ts(stored_last).isoformat()} "
                    "(appends must start strictly after the stored last timestamp)"
                )
            stored_cal = self._stored_meta(spans[-1][2]).get("calendar")
            if stored_cal != bars.calendar.value:
                raise StoreError(
                    f"refusing to append {key}: calendar {bars.calendar.value!r} differs from the "
                    f"stored calendar {stored_cal!r}"
                )
        final = directory / f"part-{first_ns:019d}-{last_ns:019d}.parquet"
        table = self._to_table(bars, ns // 1000)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write {key} to {directory}: {exc}") from exc
        write_parquet_atomic(table, final, what=str(key), prefix=".part-")
        fsync_dir(directory)
        return final

    @staticmethod
    def _to_table(bars: Bars, us: npt.NDArray[np.int64]) -> pa.Table:
        meta = {
            "symbol": bars.symbol,
            "timeframe": bars.timeframe.name,
            "calendar": bars.calendar.value,
        }
        arrays = [pa.array(us, type=pa.int64()).cast(_TS_TYPE)] + [
            pa.array(bars.column(c), type=pa.float64()) for c in OHLCV
        ]
        schema = SCHEMA.with_metadata({_META_KEY: json.dumps(meta).encode()})
        return pa.Table.from_arrays(arrays, schema=schema)

    # ----------------------------------------------------------------- read
    def read(
        self,
        symbol: str,
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> Bars:
        """Bars of ``symbol`` at ``timeframe`` with ``start <= timestamp < end``."""
        tf = Timeframe.parse(timeframe)
        directory = self.key_dir(symbol, tf)
        spans = self._part_spans(directory)
        if not spans:
            raise StoreError(f"nothing stored for {symbol} {tf.name} in {self.root}")
        start_ts = _utc(start, "start") if start is not None else None
        end_ts = _utc(end, "end") if end is not None else None
        start_ns = int(start_ts.as_unit("ns").value) if start_ts is not None else None
        end_ns = int(end_ts.as_unit("ns").value) if end_ts is not None else None
        if start_ns is not None and end_ns is not None and end_ns <= start_ns:
            raise ConfigError(
                f"invalid range reading {symbol} {tf.name}: end {end_ts} is not after "
                f"start {start_ts}"
            )

        # prune parts by name, then filter rows inside the remaining parts
        files = [
            str(p)
            for first, last, p in spans
            if (start_ns is None or last >= start_ns) and (end_ns is None or first < end_ns)
        ]
        meta = self._stored_meta(spans[-1][2])
        if meta.get("symbol") != symbol or meta.get("timeframe") != tf.name:
            raise StoreError(
                f"corrupt partition {directory}: its metadata says {meta.get('symbol')!r} "
                f"{meta.get('timeframe')!r}"
            )
        table = self._scan(files, start_ns, end_ns, directory) if files else SCHEMA.empty_table()
        if table.num_rows == 0:
            lo, hi = _ts(spans[0][0]).isoformat(), _ts(max(s[1] for s in spans)).isoformat()
            raise StoreError(
                f"no bars in range [{start_ts.isoformat() if start_ts is not None else '-inf'}, "
                f"{end_ts.isoformat() if end_ts is not None else '+inf'}) for {symbol} {tf.name}; "
                f"stored bars span {lo} .. {hi}"
            )
        ts = table.column("timestamp").cast(pa.int64()).to_numpy()
        cols = [table.column(c).to_numpy() for c in OHLCV]
        if ts.size > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            order = np.argsort(ts, kind="stable")
            ts = ts[order]
            cols = [c[order] for c in cols]
        index = pd.DatetimeIndex(ts.astype("datetime64[us]"), tz="UTC")
        frame = make_frame(index, *cols)
        return Bars.from_frame(
            frame,
            symbol=symbol,
            timeframe=tf,
            calendar=Calendar(meta.get("calendar", Calendar.CRYPTO.value)),
            source=str(directory),
        )

    @staticmethod
    def _scan(
        files: list[str], start_ns: int | None, end_ns: int | None, directory: Path
    ) -> pa.Table:
        # stored times are whole microseconds: t >= start  <=>  t_us >= ceil(start_ns / 1000),
        # and t < end  <=>  t_us < ceil(end_ns / 1000)
        field = ds.field("timestamp")
        cond = None
        if start_ns is not None:
            cond = field >= pa.scalar(-(-start_ns // 1000), type=pa.int64()).cast(_TS_TYPE)
        if end_ns is not None:
            upper = field < pa.scalar(-(-end_ns // 1000), type=pa.int64()).cast(_TS_TYPE)
            cond = upper if cond is None else cond & upper
        try:
            dataset = ds.dataset(files, schema=SCHEMA, format="parquet")
            return dataset.to_table(filter=cond)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"corrupt partition in {directory}: {exc}") from exc
