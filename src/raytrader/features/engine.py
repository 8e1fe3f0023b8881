"""Batch feature engine: compute a :class:`FeatureSet` over whole :class:`Bars`.

The output frame has one float64 column per feature (NaN before that feature's warm-up, and where a
ratio divides by zero) and a boolean ``warm`` column that is ``True`` from the first bar at which
**every** feature is past its warm-up. Nothing is back-filled: the value at bar t uses bars <= t only
(truncation invariance is tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import numpy as np
import pandas as pd

from raytrader.contract import OHLCV
from raytrader.contract import WARM_COLUMN as WARM_COLUMN  # re-exported for the features
from raytrader.data.bars import Bars
from raytrader.errors import ConfigError
from raytrader.features.spec import FeatureSet, FeatureSpec


@cache  # building talib.abstract.Function is slow; streaming calls this per micro-batch
def _output_index(fn: str, output: str | None) -> tuple[int, int]:
    # TA-Lib builds abstract.Function at import time; its stubs don't declare it
    from talib.abstract import Function  # type: ignore[attr-defined]

    names = list(Function(fn).output_names)
    if output is None:
        if len(names) != 1:
            raise ValueError(f"TA-Lib {fn} has outputs {names}; name one with output=")
        return 0, 1
    if output not in names:
        raise ValueError(f"TA-Lib {fn} has no output {output!r}; outputs: {names}")
    return names.index(output), len(names)


def evaluate_spec(spec: FeatureSpec, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Compute one spec from already-computed ``columns`` (bar columns and earlier features)."""
    args = [columns[ref] for ref in spec.inputs]
    if spec.fn is None:
        out = args[0]
    else:
        import talib

        try:
            func = getattr(talib, spec.fn)
            res = func(*args, **spec.params)
            pos, n_out = _output_index(spec.fn, spec.output)
        except Exception as exc:  # TA-Lib raises bare Exception, TypeError or AttributeError
            raise ConfigError(f"feature {spec.name!r}: TA-Lib {spec.fn} failed: {exc}") from exc
        out = res[pos] if n_out > 1 else res
        out = np.asarray(out, dtype=np.float64)
    if spec.lag:
        shifted = np.full_like(out, np.nan)
        shifted[spec.lag :] = out[: -spec.lag] if spec.lag < len(out) else shifted[spec.lag :]
        out = shifted
    if not np.isfinite(out).all():
        out = np.where(np.isinf(out), np.nan, out)
    return out


def compute_arrays(
    feature_set: FeatureSet, columns: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Compute every feature from contiguous float64 bar arrays; returns name → array (the set's
    intermediates are computed first and left out)."""
    env: dict[str, np.ndarray] = {
        c: np.ascontiguousarray(columns[c], dtype=np.float64) for c in OHLCV
    }
    for spec in feature_set.intermediates:
        env[spec.name] = evaluate_spec(spec, env)
    out: dict[str, np.ndarray] = {}
    for spec in feature_set.features:
        arr = evaluate_spec(spec, env)
        env[spec.name] = arr
        out[spec.name] = arr
    return out


def compute_features(bars: Bars, feature_set: FeatureSet | None = None) -> pd.DataFrame:
    """Features for every bar of ``bars`` plus the ``warm`` column (see module docstring)."""
    if feature_set is None:
        from raytrader.features.bar_features_v1 import BAR_FEATURES_V1

        feature_set = BAR_FEATURES_V1
    arrays = compute_arrays(feature_set, {c: bars.column(c) for c in OHLCV})
    n = len(bars)
    matrix = np.empty((n, len(arrays)), dtype=np.float64, order="F")
    for j, arr in enumerate(arrays.values()):
        matrix[:, j] = arr
    frame = pd.DataFrame(matrix, index=bars.index, columns=list(arrays), copy=False)
    warm = np.zeros(n, dtype=bool)
    warm[min(feature_set.warmup, n) :] = True
    frame[WARM_COLUMN] = warm
    frame.attrs = {
        "feature_set": feature_set.name,
        "symbol": bars.symbol,
        "timeframe": bars.timeframe.name,
    }
    return frame
