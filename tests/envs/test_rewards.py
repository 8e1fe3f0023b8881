"""Reward definitions (hand-checked) and the stress scenarios' effect on the bars."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.data import load_bars
from raytrader.envs import EnvConfig
from raytrader.envs.rewards import Reward
from raytrader.envs.scenarios import apply_scenario, extreme_volatility, flash_crash, low_liquidity
from raytrader.errors import ConfigError

EQUITY = np.array([100.0, 101.0, 99.0, 99.0, 103.0, 102.0])


def rewards(cfg: EnvConfig) -> np.ndarray:
    rw = Reward(cfg, 1)
    rw.reset(EQUITY[:1])
    return np.array([rw(EQUITY[i : i + 1], EQUITY[i + 1 : i + 2])[0] for i in range(5)])


def test_log_return() -> None:
    assert np.allclose(rewards(EnvConfig()), np.diff(np.log(EQUITY)), rtol=0, atol=1e-15)


def test_volatility_penalty_is_the_rolling_population_std() -> None:
    got = rewards(EnvConfig(reward="risk_penalized", risk_lambda=0.5, risk_window=3))
    r = np.diff(np.log(EQUITY))
    want = [r[0]] + [r[i] - 0.5 * np.std(r[max(0, i - 2) : i + 1]) for i in range(1, 5)]
    assert np.allclose(got, want, rtol=0, atol=1e-15)


def test_drawdown_penalty_charges_only_increases() -> None:
    got = rewards(EnvConfig(reward="risk_penalized", risk_penalty="drawdown", risk_lambda=2.0))
    r = np.diff(np.log(EQUITY))
    dd = 1 - EQUITY / np.maximum.accumulate(EQUITY)
    want = r - 2.0 * np.maximum(np.diff(dd), 0.0)
    assert np.allclose(got, want, rtol=0, atol=1e-15)


def test_differential_sharpe_follows_moody_and_saffell() -> None:
    eta = 0.1
    got = rewards(EnvConfig(reward="differential_sharpe", dsr_eta=eta))
    a = b = 0.0
    want = []
    for r in np.diff(np.log(EQUITY)):
        da, db = r - a, r * r - b
        var = b - a * a
        want.append((b * da - 0.5 * a * db) / var**1.5 if var > 0 else 0.0)
        a, b = a + eta * da, b + eta * db
    assert np.allclose(got, want, rtol=1e-12, atol=0)
    assert got[0] == 0.0
    assert got[1] != 0.0


@pytest.fixture(scope="module")
def goog():
    return load_bars("goog")


def test_flash_crash_drops_then_partly_recovers(goog) -> None:
    s = flash_crash(goog, np.random.default_rng(0), depth=0.3, start=1000, recovery=0.5)
    ratio = s.bars.column("close") / goog.column("close")
    assert ratio[999] == 1.0
    assert ratio[1002] == pytest.approx(0.7)
    assert ratio[-1] == pytest.approx(0.85)
    assert s.bars.column("low")[1000] < goog.column("low")[1000]


def test_low_liquidity_and_extreme_volatility(goog) -> None:
    ll = low_liquidity(goog, volume_factor=0.2)
    assert np.allclose(ll.bars.column("volume"), goog.column("volume") * 0.2)
    assert ll.slippage_multiplier == 5.0
    assert ll.participation == 0.1
    ev = extreme_volatility(goog, factor=3.0)
    r0 = np.diff(np.log(goog.column("close")))
    r1 = np.diff(np.log(ev.bars.column("close")))
    assert np.std(r1) == pytest.approx(3.0 * np.std(r0))
    assert np.mean(r1) == pytest.approx(np.mean(r0))
    with pytest.raises(ConfigError, match="unknown scenario"):
        apply_scenario("meteor", goog, np.random.default_rng(0))
