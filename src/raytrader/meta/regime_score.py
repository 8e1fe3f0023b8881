"""Scoring detected regimes against the synthetic generator's true path
(:func:`raytrader.data.synthetic.synthetic_regimes`).

A detected regime is *right* for a true one when it describes it: ``trending_bull`` a bull,
``trending_bear`` a bear, ``low_vol_range`` a calm and ``high_vol_range`` a turbulent regime, and
``crisis`` a bear or a turbulent one (a high-volatility drawdown is either). The events
(``breakout``, ``reversal``) describe none: they count as wrong, so a detector that fires them
often pays for it. Bars without a reading count as wrong too.

* balanced accuracy: the mean over the true regimes of the share of their bars read right;
* detection delay: for each change of the true regime, the bars until the detector first reads
  the new one right (the segment's length when it never does), median over the changes;
* switches per 100 bars: changes of the detected regime (bars without a reading skipped).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raytrader.data.synthetic import REGIME_NAMES
from raytrader.errors import ConfigError

DESCRIBES: dict[str, frozenset[str]] = {
    "trending_bull": frozenset({"bull"}),
    "trending_bear": frozenset({"bear"}),
    "low_vol_range": frozenset({"calm"}),
    "high_vol_range": frozenset({"turbulent"}),
    "crisis": frozenset({"bear", "turbulent"}),
    "breakout": frozenset(),
    "reversal": frozenset(),
}


@dataclass(frozen=True)
class RegimeScore:
    balanced_accuracy: float
    recall: dict[str, float]  # per true regime
    median_delay: float  # bars
    switches_per_100: float
    true_switches_per_100: float
    changes: int  # true regime changes scored
    bars: int


def score_regimes(detected: pd.Series, truth: pd.Series) -> RegimeScore:
    """Score ``detected`` (regime names or None, per bar) against ``truth`` (generator regimes)
    on the bars both cover; see the module docstring."""
    if not detected.index.equals(truth.index):
        raise ConfigError("detected and true regimes must share their index")
    unknown = set(truth.unique()) - set(REGIME_NAMES)
    if unknown:
        raise ConfigError(f"unknown true regimes {sorted(unknown)}")
    detected_values = detected.to_numpy(dtype=object)
    truth_values = truth.to_numpy(dtype=object)
    right = np.array(
        [
            d is not None and t in DESCRIBES[d]
            for d, t in zip(detected_values, truth_values, strict=True)
        ]
    )
    recall = {
        name: float(right[truth_values == name].mean())
        for name in REGIME_NAMES
        if (truth_values == name).any()
    }
    starts = np.flatnonzero(truth_values[1:] != truth_values[:-1]) + 1
    ends = np.append(starts[1:], len(truth_values))
    delays = []
    for start, end in zip(starts, ends, strict=True):
        hits = np.flatnonzero(right[start:end])
        delays.append(float(hits[0]) if len(hits) else float(end - start))
    read = [d for d in detected_values if d is not None]
    switches = sum(1 for a, b in itertools.pairwise(read) if a != b)
    n = len(truth_values)
    return RegimeScore(
        balanced_accuracy=float(np.mean(list(recall.values()))),
        recall=recall,
        median_delay=float(np.median(delays)) if delays else 0.0,
        switches_per_100=100.0 * switches / n,
        true_switches_per_100=100.0 * len(starts) / n,
        changes=len(starts),
        bars=n,
    )
