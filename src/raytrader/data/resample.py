"""Resample bars to a coarser timeframe, vectorized.

Semantics (bars are stamped by their **open** time, see :mod:`raytrader.data.timeframe`):

* **Buckets are left-closed and left-labelled.** A target bucket covers ``[T, T + Δ)`` and is
  labelled ``T``, its open time; a source bar belongs to the bucket that contains its open time.
* **Buckets are aligned to the UTC epoch**: ``5m`` buckets start at :00, :05, …; ``4h`` buckets at
  00:00, 04:00, … UTC; ``1d`` buckets at 00:00 UTC; multi-day buckets (``2d``, ``3d``) count whole
  days from 1970-01-01. **Week-multiple buckets** (``1w``, ``2w``, ``7d``, …) are the exception:
  they start on **Monday 00:00 UTC** (counted from Monday 1970-01-05), the ISO week start.
* **Aggregation**: ``open`` = first, ``high`` = max, ``low`` = min, ``close`` = last,
  ``volume`` = sum, over the source bars present in the bucket.
* **Gaps**: a bucket with no source bar produces no row (nothing is forward-filled). A bucket with
  *some* bars missing (an interior gap, or data that start mid-bucket) is kept and aggregates the
  bars it has.
* **Partial last bucket**: only the last bucket can still be forming. It is dropped unless the
  source reaches its end (``last open time + source timeframe >= bucket end``) or
  ``include_partial=True``. For session calendars (equity) whose last bar ends before the UTC bucket
  end, the final bucket therefore counts as partial; pass ``include_partial=True`` when you know the
  session is over.
* The target must be a whole multiple of the source timeframe and strictly coarser
  (:class:`~raytrader.errors.ConfigError` otherwise), and every source bar must lie entirely inside
  one bucket (a ``1h`` bar opening at 11:30 would straddle the 12:00 boundary of a ``4h`` bucket and
  leak 12:00–12:30 data into the earlier bucket); bars that straddle a boundary raise
  :class:`~raytrader.errors.DataValidationError` (rule ``aligned_to_target``).

The result keeps the symbol, calendar and index resolution of the input; its ``source`` reads
``resample(<input source>, <timeframe>)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from raytrader.data.bars import Bars, make_frame
from raytrader.data.timeframe import Timeframe
from raytrader.errors import ConfigError, DataValidationError

_NS = 1_000_000_000
_WEEK_SECONDS = 7 * 86_400
#: Week-multiple buckets are counted from Monday 1970-01-05 00:00 UTC (the epoch is a Thursday).
WEEK_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")


def bucket_origin_ns(timeframe: str | Timeframe) -> int:
    """Nanoseconds since the epoch of the boundary all ``timeframe`` buckets are counted from."""
    tf = Timeframe.parse(timeframe)
    return int(WEEK_ORIGIN.value) if tf.seconds % _WEEK_SECONDS == 0 else 0


def resample(bars: Bars, timeframe: str | Timeframe, *, include_partial: bool = False) -> Bars:
    """Aggregate ``bars`` into coarser ``timeframe`` bars (rules in the module docstring)."""
    src_tf = bars.timeframe
    tf = Timeframe.parse(timeframe)
    if tf.seconds <= src_tf.seconds or tf.seconds % src_tf.seconds != 0:
        raise ConfigError(
            f"cannot resample {bars.symbol} from {src_tf.name} to {tf.name}: the target timeframe "
            f"must be a coarser whole multiple of the source timeframe {src_tf.name}"
        )
    source = f"resample({bars.source if bars.source is not None else bars.symbol}, {tf.name})"
    idx = bars.index
    unit = idx.unit
    src_ns = src_tf.seconds * _NS
    bucket_ns = tf.seconds * _NS
    origin = bucket_origin_ns(tf)

    ts: npt.NDArray[np.int64] = idx.as_unit("ns").asi8
    rel = ts - origin
    bucket = rel // bucket_ns  # floor division: also right for times before the origin
    offset = rel - bucket * bucket_ns
    straddle = np.flatnonzero(offset + src_ns > bucket_ns)
    if straddle.size:
        shown = [idx[int(p)].isoformat() for p in straddle[: DataValidationError.MAX_SHOWN]]
        raise DataValidationError(
            symbol=bars.symbol,
            rule="aligned_to_target",
            detail=(
                f"{src_tf.name} bars cross a {tf.name} bucket boundary, so they cannot be assigned "
                f"to one {tf.name} bar"
            ),
            rows=[f"bar at {s}" for s in shown],
            count=int(straddle.size),
            source=source,
        )

    n = len(ts)
    starts = np.flatnonzero(np.diff(bucket)) + 1
    starts = np.concatenate((np.zeros(1, dtype=np.intp), starts))
    lasts = np.concatenate((starts[1:], np.array([n], dtype=np.intp))) - 1
    labels = bucket[starts] * bucket_ns + origin

    if not include_partial and int(ts[-1]) + src_ns < int(labels[-1]) + bucket_ns:
        keep = len(starts) - 1
        if keep == 0:
            raise DataValidationError(
                symbol=bars.symbol,
                rule="non_empty",
                detail=(
                    f"no complete {tf.name} bucket: the data end at "
                    f"{(idx[-1] + src_tf.delta).isoformat()}, before the only bucket "
                    f"({pd.Timestamp(int(labels[-1]), tz='UTC').isoformat()}) closes; "
                    "pass include_partial=True to keep it"
                ),
                source=source,
            )
        starts, lasts, labels = starts[:keep], lasts[:keep], labels[:keep]
        stop = int(lasts[-1]) + 1
    else:
        stop = n

    o = bars.column("open")
    h = bars.column("high")[:stop]
    lo = bars.column("low")[:stop]
    c = bars.column("close")
    v = bars.column("volume")[:stop]
    index = pd.DatetimeIndex(labels.astype("datetime64[ns]"), tz="UTC").as_unit(unit)
    frame = make_frame(
        index,
        o[starts],
        np.maximum.reduceat(h, starts),
        np.minimum.reduceat(lo, starts),
        c[lasts],
        np.add.reduceat(v, starts),
    )
    return Bars.from_frame(
        frame, symbol=bars.symbol, timeframe=tf, calendar=bars.calendar, source=source
    )
