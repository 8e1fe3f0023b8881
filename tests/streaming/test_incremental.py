"""The incremental engine equals the batch engine bit for bit, across batch sizes and restarts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raytrader.data import load_bars
from raytrader.features import BAR_FEATURES_V1, compute_features
from raytrader.streaming.history import BarHistory
from raytrader.streaming.incremental import BarRejected, IncrementalFeatureEngine


def exact(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.index.equals(b.index)
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        assert np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True), c


@pytest.mark.parametrize("dataset", ["goog", "synthetic:n_bars=3000,timeframe=1m,seed=4"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_rows_equal_batch_rows_for_every_bar(dataset: str, seed: int) -> None:
    bars = load_bars(dataset)
    engine = IncrementalFeatureEngine(BAR_FEATURES_V1, bars.timeframe)
    times, values = bars.index.asi8, bars.frame.to_numpy()
    rng = np.random.default_rng(seed)
    parts, i = [], 0
    while i < len(bars):
        k = int(rng.integers(1, 60))
        parts.append(engine.update(bars.symbol, times[i : i + k], values[i : i + k]))
        i += k
    exact(pd.concat(parts), compute_features(bars))


def test_restore_from_persisted_history_continues_exactly(tmp_path) -> None:
    bars = load_bars("goog")
    times, values = bars.index.asi8, bars.frame.to_numpy()
    first = IncrementalFeatureEngine(BAR_FEATURES_V1, "1d")
    head = first.update("GOOG", times[:1000], values[:1000])
    store = BarHistory(tmp_path, "1d", "equity")
    store.append(first.bars("GOOG", "equity"))
    second = IncrementalFeatureEngine(BAR_FEATURES_V1, "1d")
    restored = store.load("GOOG")
    assert restored is not None
    second.restore("GOOG", restored)
    tail = second.update("GOOG", times[1000:], values[1000:])
    exact(pd.concat([head, tail]), compute_features(bars))


def test_ordering_rules() -> None:
    bars = load_bars("goog").head(10)
    times, values = bars.index.asi8, bars.frame.to_numpy()
    engine = IncrementalFeatureEngine(BAR_FEATURES_V1, "1d")
    engine.update("GOOG", times[:5], values[:5])
    assert engine.classify("GOOG", int(times[5]), values[5]) == "new"
    assert engine.classify("GOOG", int(times[3]), values[3]) == "duplicate"
    with pytest.raises(BarRejected, match="conflicting duplicate"):
        engine.classify("GOOG", int(times[3]), values[3] * 1.01)
    with pytest.raises(BarRejected, match="out of order"):
        engine.classify("GOOG", int(times[3]) + 1, values[3])
    assert engine.classify("OTHER", int(times[0]), values[0]) == "new"


def test_warm_flag_follows_the_feature_set_warmup() -> None:
    bars = load_bars("goog").head(200)
    engine = IncrementalFeatureEngine(BAR_FEATURES_V1, "1d")
    rows = engine.update("GOOG", bars.index.asi8, bars.frame.to_numpy())
    assert not rows["warm"].iloc[: BAR_FEATURES_V1.warmup].any()
    assert rows["warm"].iloc[BAR_FEATURES_V1.warmup :].all()
