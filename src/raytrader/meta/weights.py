"""From members' predicted scores to ensemble weights: a softmax with a temperature, an active set,
and a projection onto the capped simplex; presets; turnover smoothing.

1. Scores are standardized across the members (``z = (s - mean) / std``; all equal → all zero)
   and turned into ``p = softmax(z / temperature)``: a large temperature tends to equal weight, a
   small one to picking the best member.
2. The active set is the ``max(min_active, #{p >= epsilon})`` members with the highest scores
   (ties: the earlier member).
3. The weights are ``clip(c · p, floor, cap)`` on the active set and 0 elsewhere, with the one
   ``c`` that makes them sum to 1: the softmax's ratios survive among the members no bound
   touches.

A setting that cannot be met — ``min_active · cap < 1`` (the active members cannot hold all the
weight), ``members · floor > 1``, fewer members than ``min_active`` — is a :class:`ConfigError`
naming the constraint, raised before any weight is computed.

Smoothing (``w = (1 - smoothing) · w_prev + smoothing · w*``) keeps the sum at 1 and every weight
under the cap; a member entering or leaving the active set passes through weights below the floor
on its way, so the floor and ``min_active`` bind the targets ``w*``, not each smoothed step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from raytrader.config import StrictConfig
from raytrader.errors import ConfigError
from raytrader.meta.kelly import KellyConfig

_BISECTION_STEPS = 200
#: the bisection stops when c is known to about one part in 10^12 (the last rounding goes to the
#: unbound members below)
_LOG_SCALE_TOLERANCE = 1e-12
_TINY = float(np.finfo(np.float64).tiny)
_MAX_LOG_SCALE = 709.0  # e^709 * tiny = 1.8: the smallest share reaches any cap


class WeightConfig(StrictConfig):
    """How scores become weights. ``temperature`` is in units of the scores' standard deviation;
    ``inf`` gives equal weight over the active set."""

    temperature: float = Field(1.0, gt=0)
    cap: float = Field(0.6, gt=0, le=1)
    floor: float = Field(0.0, ge=0, lt=1)
    min_active: int = Field(3, ge=1)
    epsilon: float = Field(0.01, ge=0, lt=1)
    smoothing: float = Field(0.2, gt=0, le=1)
    kelly: KellyConfig | None = KellyConfig()  # None: the members' position, unsized

    def check_feasible(self, members: int) -> None:
        """Raise :class:`ConfigError` naming the first constraint ``members`` cannot meet."""
        if members < self.min_active:
            raise ConfigError(
                f"min_active {self.min_active} needs at least that many members, got {members}"
            )
        if self.min_active * self.cap < 1.0 - 1e-12:
            raise ConfigError(
                f"cap {self.cap} x min_active {self.min_active} < 1: the active members cannot "
                f"hold all the weight (raise min_active to {math.ceil(1.0 / self.cap - 1e-12)} or the cap)"
            )
        if members * self.floor > 1.0 + 1e-12:
            raise ConfigError(
                f"floor {self.floor} x {members} members > 1: the floors alone exceed the whole"
            )
        if self.floor > self.cap:
            raise ConfigError(f"floor {self.floor} is above the cap {self.cap}")


# the design's presets (../shared/META.md 4.3): cap, min active, floor, temperature, Kelly
PRESETS: dict[str, dict[str, Any]] = {
    "conservative": {
        "cap": 0.40, "min_active": 4, "floor": 0.05, "temperature": 2.0, "kelly": {"fraction": 0.25}
    },
    "balanced": {
        "cap": 0.60, "min_active": 3, "floor": 0.03, "temperature": 1.0, "kelly": {"fraction": 0.5}
    },
    "aggressive": {
        "cap": 0.80, "min_active": 2, "floor": 0.0, "temperature": 0.5, "kelly": {"fraction": 0.5}
    },
    "research": {"cap": 1.0, "min_active": 1, "floor": 0.0, "temperature": 1.0, "kelly": None},
}  # fmt: skip


def preset(name: str, **overrides: Any) -> WeightConfig:
    """A preset, with ``overrides`` validated like any config (unknown keys are errors)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown weight preset {name!r}; choose one of {sorted(PRESETS)}")
    return WeightConfig.parse({**PRESETS[name], **overrides}, where=f"preset {name}")


@dataclass(frozen=True)
class Weights:
    """The weights of one rebalance and why: per member its softmax probability, whether it is
    active, and whether the cap or the floor bound it."""

    weights: np.ndarray
    probabilities: np.ndarray
    active: np.ndarray  # bool
    capped: np.ndarray  # bool
    floored: np.ndarray  # bool
    scale: float  # the c of clip(c · p, floor, cap)


def softmax_probabilities(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(z / temperature)`` of the standardized scores (equal for ``inf`` or equal
    scores)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ConfigError("scores must be a non-empty vector, one per member")
    if not np.isfinite(s).all():
        raise ConfigError(f"scores must be finite, got {s.tolist()}")
    std = float(s.std())
    if math.isinf(temperature) or std == 0.0:
        return np.full(len(s), 1.0 / len(s))
    z = (s - s.mean()) / std / temperature
    e = np.exp(z - z.max())
    return np.asarray(e / e.sum())


def target_weights(scores: np.ndarray, config: WeightConfig) -> Weights:
    """The weights for ``scores`` (one per member) under ``config``; see the module docstring."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    config.check_feasible(n)
    p = softmax_probabilities(s, config.temperature)
    size = min(n, max(config.min_active, int((p >= config.epsilon).sum())))
    order = np.argsort(-s, kind="stable")
    active = np.zeros(n, dtype=bool)
    active[order[:size]] = True
    # a softmax at a small temperature underflows to 0; the smallest normal float keeps every
    # active member's share rising with c, and its ratios to the others are beyond float anyway
    pa = np.maximum(p[active], _TINY)

    shares = pa.tolist()  # a handful of members: plain floats beat numpy's per-call overhead
    floor, cap = config.floor, config.cap

    def total(x: float) -> float:
        c = math.exp(x)
        return math.fsum(min(max(c * p, floor), cap) for p in shares)

    # total rises with c = e^x from size*floor (<= 1) to size*cap (>= 1): bisection on x for
    # total = 1 (on the log scale: c spans hundreds of orders of magnitude between temperatures)
    low, high = -800.0, 0.0
    while total(high) < 1.0 and high < _MAX_LOG_SCALE:
        high = min(high + 50.0, _MAX_LOG_SCALE)
    for _ in range(_BISECTION_STEPS):
        if high - low <= _LOG_SCALE_TOLERANCE:
            break
        mid = (low + high) / 2.0
        if total(mid) < 1.0:
            low = mid
        else:
            high = mid
    c = math.exp(high)
    wa = np.clip(c * pa, config.floor, config.cap)
    free = (wa > config.floor) & (wa < config.cap)
    if free.any():  # put the bisection's last rounding on the unbound members, within the bounds
        wa[free] += (1.0 - wa.sum()) * wa[free] / wa[free].sum()
    weights = np.zeros(n)
    weights[active] = wa
    tol = 1e-12
    return Weights(
        weights=weights,
        probabilities=p,
        active=active,
        capped=active & (weights >= config.cap - tol),
        floored=active & (weights <= config.floor + tol),
        scale=c,
    )


def smooth(previous: np.ndarray | None, target: np.ndarray, smoothing: float) -> np.ndarray:
    """``(1 - smoothing) · previous + smoothing · target`` (the target itself at the first bar)."""
    t = np.asarray(target, dtype=np.float64)
    if previous is None:
        return t.copy()
    prev = np.asarray(previous, dtype=np.float64)
    if prev.shape != t.shape:
        raise ConfigError(f"previous weights have {len(prev)} members, the target {len(t)}")
    return np.asarray((1.0 - smoothing) * prev + smoothing * t)
