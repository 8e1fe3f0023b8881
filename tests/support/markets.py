"""Synthetic markets with a pattern a model can exploit, shared by the training tests: "learning"
is then a measurable claim, not a smoke test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raytrader.data.bars import Bars, make_frame


def pattern_csv(path: Path, n: int = 3000, run: int = 12, step: float = 0.004) -> str:
    """Hourly bars that rise for ``run`` bars, then fall for ``run`` bars, with small noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sign = np.where((np.arange(n) // run) % 2 == 0, 1.0, -1.0)
    close = 100 * np.exp(np.cumsum(sign * step + rng.normal(0, step / 4, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    idx = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    frame = make_frame(
        idx,
        open_,
        np.maximum(open_, close) * 1.001,
        np.minimum(open_, close) * 0.999,
        close,
        np.full(n, 1000.0),
    )
    Bars.from_frame(frame, symbol="PAT", timeframe="1h")  # valid by the bars contract
    frame.to_csv(path)
    return str(path)


def momentum_bars(n: int = 3000, phi: float = 0.5, seed: int = 0) -> Bars:
    """5m bars whose log returns are AR(1) with ``phi > 0``: the sign of the next return follows the
    last one's with probability 1/2 + arcsin(phi)/pi (2/3 for phi = 0.5). Opens equal the previous
    close, so a position filled at the next open earns exactly the next close-to-close return."""
    rng = np.random.default_rng(seed)
    eps = rng.normal(0.0, 0.001, n)
    r = np.empty(n)
    r[0] = eps[0]
    for i in range(1, n):
        r[i] = phi * r[i - 1] + eps[i]
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + 0.0002 * rng.random(n))
    low = np.minimum(open_, close) * (1.0 - 0.0002 * rng.random(n))
    volume = 1000.0 * np.exp(0.3 * rng.standard_normal(n))
    index = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC")
    return Bars.from_frame(
        make_frame(index, open_, high, low, close, volume), symbol="MOM", timeframe="5m"
    )


def momentum_csv(path: Path, n: int = 3000, seed: int = 0) -> str:
    """:func:`momentum_bars` written as a CSV that ``load_bars`` reads back (a data spec)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    momentum_bars(n, seed=seed).frame.to_csv(path)
    return str(path)
