"""How an ensemble combines its members' targets: the one semantics of ``weighted``, ``average`` and
``voting``, used by the parallel runner's ensemble (:mod:`raytrader.strategies.ensemble`) and by the
registered ensemble pyfunc (:mod:`raytrader.ensemble`).

Inputs, per row (a bar, or one symbol's decision) and member:

* a **target** ``t_i`` in [-1, 1]. **NaN means the member is missing on that row**: it has no
  opinion (it broke, its features were NaN, its look-back is not warm). It is never read as 0
  (flat): a missing member is masked, so it cannot dilute the others toward flat;
* a **weight** ``w_i >= 0``, given per member (the registered ensemble, a runner's ``weights``) or
  per row and member (the runner's inverse-volatility weights). A negative or non-finite weight is
  a :class:`~raytrader.errors.ConfigError` naming the member. A weight of 0 takes the member out of
  the combination but does not make it missing;
* an optional **confidence** ``c_i`` in [0, 1]. Without confidences (the runner's members have
  none), a present member's confidence is 1 where it holds a position (``t_i != 0``) and 0 where it
  is flat, as a rule pyfunc reports it. A NaN confidence of a present member counts as 0.

On each row the missing members are masked and the present members' weights renormalized to sum
to 1. With ``P`` the present members and ``W = Σ_P w_i``:

``weighted``
    ``target = Σ_P w_i t_i / W``, ``confidence = Σ_P w_i c_i / W``.
``average``
    the same with every weight 1 (given weights are ignored).
``voting``
    each present member votes ``sign(t_i)`` with its weight on the sides {-1, 0, +1}; the side with
    the largest total wins and is the target, its confidence that total's share of ``W``. A tie
    between the largest totals is target 0 with confidence 0.

A row with no present member, or whose present members all weigh 0, has no decision: target NaN
(the kernel keeps the previous target; the decision service answers ``keep``) and confidence 0.

:func:`combine` also returns which members were missing on each row, so callers report
``members_missing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from raytrader.errors import ConfigError

Method = Literal["weighted", "average", "voting"]
METHODS: tuple[str, ...] = get_args(Method)
_SIDES = np.array([-1.0, 0.0, 1.0])


@dataclass(frozen=True)
class Combined:
    """One combination: per row the target (NaN: no decision) and confidence, and per row and
    member whether the member was missing."""

    target: np.ndarray
    confidence: np.ndarray
    #: (rows, members), True where the member's target was NaN
    missing: np.ndarray

    @property
    def members_missing(self) -> np.ndarray:
        """How many members were missing on each row."""
        counts: np.ndarray = self.missing.sum(axis=1)
        return counts


def combine(
    targets: np.ndarray,
    method: str,
    *,
    weights: np.ndarray | None = None,
    confidences: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> Combined:
    """Combine ``targets`` (rows x members, NaN = missing) by ``method`` (module docstring).

    ``weights``: per member (members,) or per row and member (rows x members); None: every member
    weighs 1. ``confidences``: rows x members, or None (1 where a position is held, else 0).
    ``names`` name the members in error messages."""
    if method not in METHODS:
        raise ConfigError(f"unknown ensemble method {method!r}; use {', '.join(METHODS)}")
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] == 0:
        raise ConfigError(f"member targets must be (rows, members) with members, got {t.shape}")
    if names is not None and len(names) != t.shape[1]:
        raise ConfigError(f"{len(names)} member names for {t.shape[1]} members")
    missing = np.isnan(t)
    present = ~missing
    t0 = np.where(missing, 0.0, t)
    outside = np.abs(t0) > 1.0
    if outside.any():
        row, col = (int(x[0]) for x in np.nonzero(outside))
        raise ConfigError(
            f"{_member(names, col)}: target {t[row, col]} at row {row} is outside [-1, 1]"
        )
    w = _weights(weights, t.shape, method, names)
    wp = np.where(present, w, 0.0)
    total = wp.sum(axis=1)
    decided = total > 0.0
    safe = np.where(decided, total, 1.0)
    if method == "voting":
        sides = np.sign(t0)
        votes = np.stack([(wp * (sides == s)).sum(axis=1) for s in _SIDES], axis=1)
        best = votes.max(axis=1)
        tie = (votes == best[:, None]).sum(axis=1) > 1
        target = np.where(tie, 0.0, _SIDES[votes.argmax(axis=1)])
        confidence = np.where(tie, 0.0, best / safe)
    else:
        if confidences is None:
            c = (t0 != 0.0).astype(np.float64)
        else:
            c = np.asarray(confidences, dtype=np.float64)
            if c.shape != t.shape:
                raise ConfigError(f"confidences are {c.shape}, targets {t.shape}")
            c = np.where(present & ~np.isnan(c), c, 0.0)
        target = (wp * t0).sum(axis=1) / safe
        confidence = (wp * c).sum(axis=1) / safe
    return Combined(
        target=np.where(decided, target, np.nan),
        confidence=np.where(decided, confidence, 0.0),
        missing=missing,
    )


def _weights(
    weights: np.ndarray | None, shape: tuple[int, ...], method: str, names: Sequence[str] | None
) -> np.ndarray:
    """The weights as an array that broadcasts over (rows, members), checked."""
    if weights is None or method == "average":
        return np.ones(shape[1])
    w = np.asarray(weights, dtype=np.float64)
    if w.shape not in ((shape[1],), shape):
        raise ConfigError(
            f"weights must be per member {(shape[1],)} or per row and member {shape}, got {w.shape}"
        )
    bad = ~np.isfinite(w) | (w < 0.0)
    if bad.any():
        first = tuple(int(x[0]) for x in np.nonzero(bad))  # (col,) or (row, col)
        raise ConfigError(
            f"{_member(names, first[-1])}: weight {float(w[first])} must be finite and >= 0"
        )
    return w


def _member(names: Sequence[str] | None, col: int) -> str:
    return f"member {names[col]}" if names is not None else f"member #{col}"


__all__ = ["METHODS", "Combined", "Method", "combine"]
