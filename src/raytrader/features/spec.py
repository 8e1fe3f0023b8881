"""Declarative feature sets: each feature is one TA-Lib call (or a lagged copy of another feature).

A :class:`FeatureSpec` names a TA-Lib function, its positional inputs and its parameters. An input is
either a bar column (``open, high, low, close, volume``) or the name of a feature declared **earlier**
in the same set, so composites such as Bollinger %b are TA-Lib compositions (``DIV(SUB(...), ...)``)
rather than hand-written arithmetic. ``lag=k`` shifts the result k bars into the past; a spec with no
``fn`` and ``lag>=1`` is a plain lagged copy, which is how a model gets a short history from a single
feature row (the row the online store serves).

A set may also declare **intermediates**: specs computed first, in order, that later specs use as
inputs but that are not columns of the output. They let a set build a scale-free column from a
price-level or cumulative series (``LN(DIV(close, SMA(close)))`` needs the SMA) without emitting
that series. An intermediate may use bar columns and earlier intermediates; a feature may use bar
columns, any intermediate and earlier features.

Warm-up: the first bar at which a feature can be valid is known before computing anything,
``max(warm-up of its inputs) + TA-Lib lookback + lag``; rows before it are NaN in the output and the
engine marks them (see :mod:`raytrader.features.engine`).

The same spec drives the batch engine now and an incremental (streaming) engine later: a spec is a pure
function of the bars at or before t.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field, model_validator

from raytrader.config import StrictConfig
from raytrader.contract import OHLCV
from raytrader.errors import ConfigError


class FeatureSpec(StrictConfig):
    """One output column: ``fn(*inputs, **params)[output]`` shifted by ``lag`` bars."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    fn: str | None = None
    inputs: tuple[str, ...] = ("close",)
    params: dict[str, int | float] = Field(default_factory=dict)
    output: str | None = None
    lag: int = Field(default=0, ge=0)
    description: str = ""

    @model_validator(mode="after")
    def _check_shape(self) -> FeatureSpec:
        if self.fn is None:
            if self.lag < 1 or len(self.inputs) != 1:
                raise ValueError("a spec without fn must be a lagged copy: one input and lag >= 1")
            return self
        try:
            check_talib_call(self.fn, self.params, self.output, len(self.inputs))
        except ConfigError as exc:
            raise ValueError(f"feature {self.name!r}: {exc}") from None
        return self


class FeatureSet(StrictConfig):
    """An ordered, versioned-by-name collection of feature specs (the output columns), plus the
    intermediates they are built from (computed, never emitted; see the module docstring)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*_v\d+$")
    description: str = ""
    features: tuple[FeatureSpec, ...]
    intermediates: tuple[FeatureSpec, ...] = ()

    @model_validator(mode="after")
    def _check_graph(self) -> FeatureSet:
        seen: set[str] = set()
        for kind, specs in (("intermediate", self.intermediates), ("feature", self.features)):
            for spec in specs:
                if spec.name in seen or spec.name in OHLCV:
                    raise ValueError(f"duplicate or reserved feature name {spec.name!r}")
                for ref in spec.inputs:
                    if ref not in OHLCV and ref not in seen:
                        earlier = (
                            "an intermediate declared earlier (intermediates cannot use features)"
                            if kind == "intermediate"
                            else "a feature declared earlier in the set nor an intermediate"
                        )
                        raise ValueError(
                            f"{kind} {spec.name!r}: input {ref!r} is neither a bar column nor "
                            f"{earlier}"
                        )
                seen.add(spec.name)
        return self

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.features]

    def spec(self, name: str) -> FeatureSpec:
        """The spec of a feature (or of an intermediate) by name."""
        for s in (*self.features, *self.intermediates):
            if s.name == name:
                return s
        raise ConfigError(f"feature set {self.name!r} has no feature {name!r}")

    @cached_property
    def warmups(self) -> dict[str, int]:
        """Index of the first bar at which each feature can be valid (0 = from the first bar)."""
        every: dict[str, int] = {}
        for s in (*self.intermediates, *self.features):
            base = max((every.get(ref, 0) for ref in s.inputs), default=0)
            every[s.name] = base + (talib_lookback(s.fn, s.params) if s.fn else 0) + s.lag
        return {s.name: every[s.name] for s in self.features}

    @property
    def warmup(self) -> int:
        """Bars needed before every feature of the set is valid."""
        return max(self.warmups.values(), default=0)

    @property
    def max_lookback_hint(self) -> int:
        """Window length a rolling engine needs at least (recursive indicators need more history)."""
        return self.warmup + 1

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _talib_function(fn: str) -> Any:
    # TA-Lib builds abstract.Function at import time; its stubs don't declare it
    from talib.abstract import Function  # type: ignore[attr-defined]

    try:
        return Function(fn)
    except Exception as exc:  # TA-Lib raises a bare Exception for unknown names
        raise ConfigError(f"unknown TA-Lib function {fn!r}") from exc


def check_talib_call(
    fn: str, params: dict[str, int | float], output: str | None, n_inputs: int
) -> None:
    """Raise ConfigError unless ``fn(*n_inputs arrays, **params)[output]`` is a valid TA-Lib call."""
    func = _talib_function(fn)
    unknown = set(params) - set(func.parameters)
    if unknown:
        raise ConfigError(
            f"TA-Lib {fn} has no parameter(s) {sorted(unknown)}; it takes {list(func.parameters)}"
        )
    arity = sum(len(v) if isinstance(v, list) else 1 for v in func.input_names.values())
    if n_inputs != arity:
        raise ConfigError(f"TA-Lib {fn} takes {arity} input series, got {n_inputs}")
    outputs = list(func.output_names)
    if output is None and len(outputs) != 1:
        raise ConfigError(f"TA-Lib {fn} has outputs {outputs}; name one with output=")
    if output is not None and output not in outputs:
        raise ConfigError(f"TA-Lib {fn} has no output {output!r}; outputs: {outputs}")


def talib_lookback(fn: str, params: dict[str, int | float]) -> int:
    """TA-Lib's own lookback for ``fn`` with ``params`` (raises ConfigError if unknown)."""
    func = _talib_function(fn)
    unknown = set(params) - set(func.parameters)
    if unknown:
        raise ConfigError(
            f"TA-Lib {fn} has no parameter(s) {sorted(unknown)}; it takes {list(func.parameters)}"
        )
    func.set_parameters(params)
    return int(func.lookback)
