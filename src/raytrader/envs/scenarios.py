"""Stress scenarios: transformations of a bar series for evaluation and for mixing into training.

Each returns a :class:`Scenario`: new, validated bars (features are then recomputed on them by the
same feature definition) and the execution changes that come with it.

* ``flash_crash``: from a random bar, prices fall by ``depth`` over ``crash_bars`` bars (volume x3),
  then recover ``recovery`` of the fall over ``recovery_bars`` bars and continue from there; every
  price after the start is scaled by the path's factor, so returns elsewhere are unchanged.
* ``low_liquidity``: volume x ``volume_factor``, slippage x ``slippage_multiplier``, and partial
  fills: one bar can change the position by at most ``participation`` of that bar's traded value
  (``volume x close``) relative to equity; the rest of an order waits for the next bars while the
  target stands (the environment applies this cap to its targets — the kernel fills what it gets).
* ``extreme_volatility``: close-to-close log returns are scaled by ``factor`` around their mean
  and each bar's open/high/low distances from its close (in log terms) by the same factor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raytrader.data.bars import Bars, make_frame
from raytrader.errors import ConfigError


@dataclass(frozen=True)
class Scenario:
    name: str
    bars: Bars
    slippage_multiplier: float = 1.0
    participation: float | None = None


def _rebuild(
    bars: Bars,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    name: str,
) -> Bars:
    hi = np.maximum.reduce([h, o, c])
    low = np.minimum.reduce([lo, o, c])
    frame = make_frame(bars.index, o, hi, low, c, v)
    return Bars.from_frame(
        frame,
        symbol=bars.symbol,
        timeframe=bars.timeframe,
        calendar=bars.calendar,
        source=f"scenario:{name}",
    )


def flash_crash(
    bars: Bars,
    rng: np.random.Generator,
    *,
    depth: float = 0.2,
    crash_bars: int = 3,
    recovery_bars: int = 20,
    recovery: float = 0.5,
    start: int | None = None,
) -> Scenario:
    if not 0.0 < depth < 1.0 or not 0.0 <= recovery <= 1.0:
        raise ConfigError("flash_crash: depth must be in (0, 1) and recovery in [0, 1]")
    n = len(bars)
    span = crash_bars + recovery_bars
    if n <= span + 1:
        raise ConfigError(f"flash_crash: {n} bars are too few for a {span}-bar crash and recovery")
    s = int(rng.integers(1, n - span)) if start is None else start
    path = np.ones(n)
    bottom = 1.0 - depth
    path[s : s + crash_bars] = 1.0 - depth * np.arange(1, crash_bars + 1) / crash_bars
    end = bottom + depth * recovery
    path[s + crash_bars : s + span] = bottom + (end - bottom) * (
        np.arange(1, recovery_bars + 1) / recovery_bars
    )
    path[s + span :] = end
    # within a crash bar, the open sits at the previous bar's level and the low at this bar's
    prev = np.concatenate([[1.0], path[:-1]])
    o = bars.column("open") * prev
    c = bars.column("close") * path
    h = bars.column("high") * np.maximum(path, prev)
    lo = bars.column("low") * np.minimum(path, prev)
    v = bars.column("volume").copy()
    v[s : s + crash_bars] *= 3.0
    return Scenario("flash_crash", _rebuild(bars, o, h, lo, c, v, "flash_crash"))


def low_liquidity(
    bars: Bars,
    rng: np.random.Generator | None = None,
    *,
    volume_factor: float = 0.1,
    slippage_multiplier: float = 5.0,
    participation: float = 0.1,
) -> Scenario:
    if (
        not 0.0 < volume_factor <= 1.0
        or slippage_multiplier < 1.0
        or not 0.0 < participation <= 1.0
    ):
        raise ConfigError(
            "low_liquidity: volume_factor in (0, 1], slippage_multiplier >= 1, participation in (0, 1]"
        )
    v = bars.column("volume") * volume_factor
    out = _rebuild(
        bars,
        bars.column("open"),
        bars.column("high"),
        bars.column("low"),
        bars.column("close"),
        v,
        "low_liquidity",
    )
    return Scenario("low_liquidity", out, slippage_multiplier, participation)


def extreme_volatility(
    bars: Bars, rng: np.random.Generator | None = None, *, factor: float = 3.0
) -> Scenario:
    if factor <= 0.0:
        raise ConfigError("extreme_volatility: factor must be > 0")
    c = bars.column("close")
    logc = np.log(c)
    r = np.diff(logc)
    mu = r.mean() if len(r) else 0.0
    new_logc = np.concatenate([[logc[0]], logc[0] + np.cumsum(mu + factor * (r - mu))])
    nc = np.exp(new_logc)

    def scale(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(new_logc + factor * (np.log(x) - logc)), dtype=np.float64)

    out = _rebuild(
        bars,
        scale(bars.column("open")),
        scale(bars.column("high")),
        scale(bars.column("low")),
        nc,
        bars.column("volume"),
        "extreme_volatility",
    )
    return Scenario("extreme_volatility", out)


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "flash_crash": flash_crash,
    "low_liquidity": low_liquidity,
    "extreme_volatility": extreme_volatility,
}


def apply_scenario(name: str, bars: Bars, rng: np.random.Generator) -> Scenario:
    try:
        fn = SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario {name!r}; choose from {sorted(SCENARIOS)}") from None
    return fn(bars, rng)
