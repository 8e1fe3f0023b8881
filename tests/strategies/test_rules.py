"""Built-in rule strategies and the registry: output contract, causality, rules, parameters."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib

from raytrader.backtest.engine import run_backtest, sweep
from raytrader.data import Bars
from raytrader.errors import ConfigError, UnknownNameError
from raytrader.strategies import (
    Strategy,
    StrategyParams,
    get_strategy,
    make_strategy,
    register,
    rules,
    strategy_names,
)
from raytrader.strategies import base as strategy_base
from raytrader.strategies.rules import MaCross, MaCrossParams
from tests.conftest import make_bars

BUILTIN = ["bollinger", "buy_and_hold", "ma_cross", "macd", "mean_reversion", "momentum", "rsi"]
# non-default parameters exercised alongside the defaults
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "bollinger": [{}, {"period": 10, "nbdev": 1.5}, {"short": False}],
    "buy_and_hold": [{}],
    "ma_cross": [{}, {"fast": 5, "slow": 50}, {"fast": 3, "slow": 8, "short": False}],
    "macd": [{}, {"fast": 5, "slow": 35, "signal": 5}],
    "mean_reversion": [{}, {"period": 10, "entry_z": 1.5, "exit_z": 0.2}],
    "momentum": [{}, {"period": 5, "threshold": 0.002}],
    "rsi": [{}, {"period": 7, "lower": 20, "upper": 80}],
}
CASES = [(name, params) for name in BUILTIN for params in VARIANTS[name]]
CASE_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'default'}" for n, p in CASES]


def test_builtin_strategies_are_registered() -> None:
    builtin = [
        n for n in strategy_names() if get_strategy(n).__module__ == "raytrader.strategies.rules"
    ]
    assert builtin == BUILTIN
    assert sorted(cls.name for cls in rules.BUILTIN) == BUILTIN


def test_the_registry_imports_no_strategy_and_a_fresh_process_sees_the_builtins() -> None:
    """No import cycle: base.py imports nothing from the rules; importing only the registry
    module (which imports the package first) registers the built-ins."""
    tree = ast.parse(Path(strategy_base.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not {m for m in imported if m.startswith("raytrader.strategies")}
    code = "from raytrader.strategies.base import strategy_names; print(strategy_names())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == str(BUILTIN)


@pytest.fixture(scope="module", params=["goog", "syn"])
def bars(request: pytest.FixtureRequest, synthetic_bars: Callable[..., Bars]) -> Bars:
    if request.param == "goog":
        return request.getfixturevalue("goog")
    return synthetic_bars(n=4000, seed=3, timeframe="1m")


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_targets_are_aligned_bounded_finite_and_deterministic(
    bars: Bars, name: str, params: dict[str, Any]
) -> None:
    strategy = make_strategy(name, params)
    targets = strategy.target_positions(bars.frame)
    assert isinstance(targets, pd.Series)
    assert targets.index.equals(bars.index)
    assert targets.dtype == np.float64
    values = targets.to_numpy()
    assert not np.isnan(values).any()
    assert ((values >= -1.0) & (values <= 1.0)).all()
    again = make_strategy(name, params).target_positions(bars.frame.copy())
    assert np.array_equal(values, again.to_numpy())
    if name != "buy_and_hold":
        assert len(np.unique(values)) > 1  # the rule actually trades on this data


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_targets_on_a_prefix_equal_the_full_targets(
    bars: Bars, name: str, params: dict[str, Any]
) -> None:
    strategy = make_strategy(name, params)
    full = strategy.target_positions(bars.frame).to_numpy()
    rng = np.random.default_rng(len(bars) + len(name))
    for cut in sorted({1, 2, 40, *rng.integers(3, len(bars), size=7).tolist()}):
        part = strategy.target_positions(bars.frame.iloc[:cut]).to_numpy()
        assert np.array_equal(part, full[:cut]), f"{name} differs on the first {cut} bars"


@pytest.mark.parametrize("name", [n for n in BUILTIN if n != "buy_and_hold"])
def test_short_false_never_targets_a_short(goog: Bars, name: str) -> None:
    with_short = make_strategy(name, {"short": True}).target_positions(goog.frame).to_numpy()
    long_only = make_strategy(name, {"short": False}).target_positions(goog.frame).to_numpy()
    assert (with_short < 0).any()
    assert (long_only >= 0).all()
    np.testing.assert_array_equal(long_only, np.where(with_short < 0, 0.0, with_short))


def test_buy_and_hold_is_long_every_bar_and_long_only_by_default(goog: Bars) -> None:
    strategy = make_strategy("buy_and_hold")
    assert strategy.params.short is False
    assert (strategy.target_positions(goog.frame) == 1.0).all()


# ---- ma_cross ------------------------------------------------------------------------------------------

# SMA(2) - SMA(4) is -1 until bar 6 (-0.25), +1.5 at bar 7 (cross up), +1.25 at bar 10, -1.25 at bar 11
CROSS_CLOSE = [20, 19, 18, 17, 16, 15, 17, 20, 24, 25, 24, 20, 16, 13, 12]


def test_ma_cross_targets_flip_at_the_hand_computed_crosses() -> None:
    bars = make_bars(CROSS_CLOSE)
    fast = talib.SMA(np.array(CROSS_CLOSE, dtype=float), 2)
    slow = talib.SMA(np.array(CROSS_CLOSE, dtype=float), 4)
    np.testing.assert_array_equal((fast - slow)[[6, 7, 10, 11]], [-0.25, 1.5, 1.25, -1.25])
    targets = (
        make_strategy("ma_cross", {"fast": 2, "slow": 4}).target_positions(bars.frame).to_numpy()
    )
    np.testing.assert_array_equal(targets, [0] * 7 + [1] * 4 + [-1] * 4)
    long_only = make_strategy("ma_cross", {"fast": 2, "slow": 4, "short": False})
    np.testing.assert_array_equal(
        long_only.target_positions(bars.frame).to_numpy(), [0] * 7 + [1] * 4 + [0] * 4
    )


def test_ma_cross_touch_then_separate_is_not_a_cross() -> None:
    # SMA(1) - SMA(2) = (c[t] - c[t-1]) / 2: negative, zero (touch), then positive -> no strict cross
    bars = make_bars([10.0, 9.0, 9.0, 10.0, 11.0, 10.0, 11.0])
    targets = (
        make_strategy("ma_cross", {"fast": 1, "slow": 2}).target_positions(bars.frame).to_numpy()
    )
    # bar 5: diff -0.5 after +0.5 -> cross down; bar 6: +0.5 after -0.5 -> cross up
    np.testing.assert_array_equal(targets, [0, 0, 0, 0, 0, -1, 1])


def test_ma_cross_target_rows_for_a_grid_equal_per_params_targets(goog: Bars) -> None:
    sets = [
        MaCrossParams(fast=f, slow=s, short=short)
        for f in (2, 5, 10, 15)
        for s in (20, 30, 50)
        for short in (True, False)
    ]
    rows = MaCross.target_rows(goog.frame, sets)
    assert rows.shape == (len(sets), len(goog))
    for j, p in enumerate(sets):
        single = MaCross(p).target_positions(goog.frame).to_numpy()
        assert np.array_equal(rows[j], single), p


def test_default_target_rows_stack_per_params_targets(goog: Bars) -> None:
    cls = get_strategy("rsi")
    sets = [cls.Params(period=p, lower=25, upper=75) for p in (5, 9, 14)]
    rows = cls.target_rows(goog.frame, sets)
    for j, p in enumerate(sets):
        assert np.array_equal(rows[j], cls(p).target_positions(goog.frame).to_numpy())
    assert cls.target_rows(goog.frame, []).shape == (0, len(goog))


# ---- the other rules against plain-Python references ---------------------------------------------------


def _hold(events: np.ndarray) -> np.ndarray:
    out, held = np.empty(len(events)), 0.0
    for i, e in enumerate(events):
        if not np.isnan(e):
            held = e
        out[i] = held
    return out


def _reference(name: str, c: np.ndarray) -> np.ndarray:
    ev = np.full(len(c), np.nan)
    if name == "rsi":
        rsi = talib.RSI(c, 14)
        for i, v in enumerate(rsi):
            ev[i] = 1.0 if v < 30 else (-1.0 if v > 70 else np.nan)
    elif name == "macd":
        _, _, hist = talib.MACD(c, 12, 26, 9)
        ev = np.sign(hist)
    elif name == "momentum":
        roc = talib.ROCP(c, 20)
        ev = np.where(np.isnan(roc), np.nan, np.sign(roc))
    elif name == "bollinger":
        upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0)
        for i in range(len(c)):
            if c[i] < lower[i]:
                ev[i] = 1.0
            elif c[i] > upper[i]:
                ev[i] = -1.0
            elif i > 0 and (
                (c[i - 1] < middle[i - 1] and c[i] >= middle[i])
                or (c[i - 1] > middle[i - 1] and c[i] <= middle[i])
            ):
                ev[i] = 0.0
    elif name == "mean_reversion":
        sma, sd = talib.SMA(c, 20), talib.STDDEV(c, 20, 1.0)
        for i in range(len(c)):
            if np.isnan(sma[i]):
                continue
            z = (c[i] - sma[i]) / sd[i] if sd[i] > 0 else 0.0
            ev[i] = 1.0 if z < -2.0 else (-1.0 if z > 2.0 else (0.0 if abs(z) < 0.5 else np.nan))
    return _hold(ev)


@pytest.mark.parametrize("name", ["rsi", "macd", "momentum", "bollinger", "mean_reversion"])
def test_rule_matches_a_plain_python_reference(goog: Bars, name: str) -> None:
    c = goog.column("close").copy()
    expected = _reference(name, c)
    got = make_strategy(name).target_positions(goog.frame).to_numpy()
    np.testing.assert_array_equal(got, expected)


# ---- parameters and registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_unknown_param_is_a_config_error_naming_it(name: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"strategy {name}: unknown parameter\(s\) \['bogus_param'\]"
    ):
        make_strategy(name, {"bogus_param": 1})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ma_cross", {"fast": 20, "slow": 20}, r"fast \(20\) must be smaller than slow \(20\)"),
        ("ma_cross", {"fast": 30, "slow": 10}, r"fast \(30\) must be smaller than slow \(10\)"),
        ("macd", {"fast": 26, "slow": 12}, r"fast \(26\) must be smaller than slow \(12\)"),
        ("rsi", {"lower": 70, "upper": 30}, r"lower \(70.0\) must be below upper \(30.0\)"),
        (
            "mean_reversion",
            {"entry_z": 1.0, "exit_z": 1.0},
            r"exit_z \(1.0\) must be below entry_z",
        ),
        ("ma_cross", {"fast": 0}, r"strategy ma_cross\.fast"),
        ("bollinger", {"period": "long"}, r"strategy bollinger\.period"),
    ],
)
def test_invalid_params_are_config_errors(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_strategy(name, params)


def test_unknown_strategy_name_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_strategy("no_such_strategy")
    err = info.value
    assert err.name == "no_such_strategy"
    for name in BUILTIN:
        assert name in err.known
        assert name in str(err)
    assert "unknown strategy 'no_such_strategy'; known: " in str(err)
    assert isinstance(err, KeyError)


def test_params_instance_of_the_wrong_model_is_rejected() -> None:
    with pytest.raises(ConfigError, match="expects MaCrossParams"):
        MaCross(StrategyParams())


class BreakoutParams(StrategyParams):
    window: int = 20


def _breakout_class() -> type[Strategy]:
    class Breakout(Strategy):
        name = "user_breakout_test"
        Params = BreakoutParams
        params: BreakoutParams

        def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
            c = frame["close"]
            high = c.rolling(self.params.window, min_periods=1).max()
            return pd.Series(np.where(c >= high, 1.0, 0.0), index=frame.index)

    return Breakout


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Strategy]]:
    """A copy of the registry for this test alone (restored afterwards)."""
    scratch = dict(strategy_base._REGISTRY)
    monkeypatch.setattr(strategy_base, "_REGISTRY", scratch)
    return scratch


def test_registering_a_user_strategy_makes_it_usable_everywhere(
    goog: Bars, scratch_registry: dict[str, type[Strategy]]
) -> None:
    cls = register(_breakout_class())
    assert "user_breakout_test" in strategy_names()
    assert get_strategy("user_breakout_test") is cls
    strategy = make_strategy("user_breakout_test", {"window": 50})
    assert strategy.params.window == 50
    assert strategy.describe() == {
        "name": "user_breakout_test",
        "params": {"short": True, "window": 50},
    }
    result = run_backtest(goog, strategy)
    assert result.strategy == "user_breakout_test"
    assert result.metrics["num_trades"] > 0
    table = sweep(goog, "user_breakout_test", {"window": [10, 20, 50]})
    assert sorted(table.window) == [10, 20, 50]
    with pytest.raises(
        ConfigError, match=r"strategy user_breakout_test: unknown parameter\(s\) \['windw'\]"
    ):
        make_strategy("user_breakout_test", {"windw": 3})


def test_a_registration_in_a_scratch_registry_is_gone_afterwards() -> None:
    """The isolation the user-strategy tests rely on, checked inside one test (so it does not
    depend on which test ran before)."""
    before = strategy_names()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(strategy_base, "_REGISTRY", dict(strategy_base._REGISTRY))
        register(_breakout_class())
        assert strategy_names() == sorted([*before, "user_breakout_test"])
    assert strategy_names() == before
    assert "user_breakout_test" not in before


def test_a_taken_name_is_refused_unless_replace_is_given(
    scratch_registry: dict[str, type[Strategy]],
) -> None:
    first = register(_breakout_class())
    assert register(first) is first  # the same class again: nothing to refuse
    second = _breakout_class()
    with pytest.raises(
        ConfigError,
        match=r"strategy name 'user_breakout_test' is taken by tests\.strategies\.test_rules\."
        r"_breakout_class\.<locals>\.Breakout; use @register\(replace=True\)",
    ):
        register(second)
    assert get_strategy("user_breakout_test") is first
    assert register(second, replace=True) is second
    assert get_strategy("user_breakout_test") is second

    @register(replace=True)
    class Third(second):  # a subclass of the local class
        pass

    assert get_strategy("user_breakout_test") is Third
    with pytest.raises(ConfigError, match="strategy name 'ma_cross' is taken by raytrader"):

        @register
        class MyCross(MaCross):
            pass


def test_register_requires_a_name() -> None:
    class Nameless(Strategy):
        def target_positions(self, frame: pd.DataFrame, **hooks: Any) -> pd.Series:
            return pd.Series(0.0, index=frame.index)

    with pytest.raises(ConfigError, match="needs a class attribute 'name'"):
        register(Nameless)
