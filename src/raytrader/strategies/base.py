"""The strategy interface and registry.

A strategy is one method: a DataFrame of bars (and optionally features), indexed by bar open time, in
→ target positions out, a float Series aligned with the frame, each value in [-1, 1] as a fraction of
equity (-1 all short, 0 flat, 1 all long) decided at that bar's close.

**NaN means no decision** on that bar (the strategy cannot tell, e.g. a feature it reads is NaN),
never flat: the kernel keeps the previous target, and an ensemble counts the strategy as missing on
that bar (:mod:`raytrader.strategies.combine`). The built-in rules decide every bar of a price
window (their state machines start flat); read from single feature rows
(:meth:`Strategy.feature_targets`) they are NaN where those features are.

Parameters are a pydantic model (``extra="forbid"``), so an unknown or invalid parameter is an error
naming it. Optional hooks arrive as keyword arguments, so the interface can grow without breaking
user strategies; ``interface_version`` says which version a strategy was written against.

Register your own with ``@register``::

    @register
    class Breakout(Strategy):
        name = "breakout"
        Params = BreakoutParams
        def target_positions(self, frame, **hooks):
            ...

A name is registered once: registering another class under a taken name is a
:class:`~raytrader.errors.ConfigError` naming the class that holds it, unless you say
``@register(replace=True)`` (re-registering the same class is a no-op). The built-in rules
(:mod:`raytrader.strategies.rules`) are registered by the ``raytrader.strategies`` package when it
is imported, which importing this module always does first; this module imports no strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, overload

import numba as nb
import numpy as np
import pandas as pd
from pydantic import ValidationError

from raytrader.config import StrictConfig, describe_validation_error
from raytrader.errors import ConfigError, UnknownNameError

INTERFACE_VERSION = 1


class StrategyParams(StrictConfig):
    """Parameters every rule strategy accepts."""

    short: bool = True


class Strategy(ABC):
    """Base class: subclasses set ``name`` and ``Params`` and implement :meth:`target_positions`."""

    name: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    interface_version: ClassVar[int] = INTERFACE_VERSION
    description: ClassVar[str] = ""

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None) -> None:
        if params is None:
            params = {}
        if isinstance(params, StrategyParams):
            if not isinstance(params, self.Params):
                raise ConfigError(
                    f"strategy {self.name!r} expects {self.Params.__name__}, got {type(params).__name__}"
                )
            self.params = params
        else:
            self.params = parse_params(self.name, self.Params, params)

    @abstractmethod
    def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
        """Target position in [-1, 1] (or NaN: no decision) for each bar of ``frame``, decided
        at the bar's close."""

    def feature_targets(self, features: pd.DataFrame) -> np.ndarray | None:
        """The held target of each row read from that row's ``bar_features_v1`` values alone
        (what the online store serves: one row, no price window), or None when the rule's state
        cannot be read from one row. Where it can, it equals :meth:`target_positions` once the
        rule's look-back is warm (tested); the decision service serves rules through this. A row
        whose features the rule reads are NaN gets NaN (no decision), never 0 (flat)."""
        return None

    @classmethod
    def target_rows(cls, frame: pd.DataFrame, param_sets: Sequence[StrategyParams]) -> np.ndarray:
        """Targets for many parameter sets at once, one row per set (n_sets x n_bars).

        The default calls :meth:`target_positions` per set; override to share work across sets.
        """
        rows = [cls(p).target_positions(frame).to_numpy(dtype=np.float64) for p in param_sets]
        return np.vstack(rows) if rows else np.empty((0, len(frame)))

    def _finish(self, frame: pd.DataFrame, events: np.ndarray) -> pd.Series:
        """Turn entry/exit events (NaN = no event) into held targets; applies ``short``."""
        held = hold_events(np.asarray(events, dtype=np.float64), bool(self.params.short))
        return pd.Series(held, index=frame.index, name=self.name)

    @property
    def params_json(self) -> dict[str, Any]:
        """The parameters as JSON-ready values (computed once: parameters are frozen)."""
        cached: dict[str, Any] | None = self.__dict__.get("_params_json")
        if cached is None:
            cached = self.params.model_dump(mode="json")
            self.__dict__["_params_json"] = cached
        return dict(cached)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params_json}


@nb.njit(cache=True)
def hold_events(events: np.ndarray, short: bool) -> np.ndarray:
    """Forward-fill events (NaN = no event) from a flat start; negative → 0 unless ``short``."""
    out = np.empty_like(events)
    held = 0.0
    for i in range(events.shape[0]):
        e = events[i]
        if not np.isnan(e):
            held = e if (short or e > 0.0) else 0.0
        out[i] = held
    return out


def parse_params(
    name: str, model: type[StrategyParams], params: Mapping[str, Any]
) -> StrategyParams:
    unknown = sorted(set(params) - set(model.model_fields))
    if unknown:
        raise ConfigError(
            f"strategy {name}: unknown parameter(s) {unknown}; it takes {sorted(model.model_fields)}"
        )
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, f"strategy {name}")) from exc


_REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound=type[Strategy])


@overload
def register(cls: S, *, replace: bool = False) -> S: ...
@overload
def register(cls: None = None, *, replace: bool = False) -> Callable[[S], S]: ...
def register(cls: S | None = None, *, replace: bool = False) -> S | Callable[[S], S]:
    """Class decorator adding a strategy to the registry under ``cls.name``: ``@register``, or
    ``@register(replace=True)`` to take over a name another class holds."""

    def add(c: S) -> S:
        name = getattr(c, "name", None)
        if not name:
            raise ConfigError(f"{c.__name__} needs a class attribute 'name'")
        held = _REGISTRY.get(name)
        if held is not None and held is not c and not replace:
            raise ConfigError(
                f"strategy name {name!r} is taken by {held.__module__}.{held.__qualname__}; "
                f"use @register(replace=True) to replace it with {c.__module__}.{c.__qualname__}"
            )
        _REGISTRY[name] = c
        return c

    return add if cls is None else add(cls)


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def get_strategy(name: str) -> type[Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("strategy", name, list(_REGISTRY)) from None


def make_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    return get_strategy(name)(params or {})
