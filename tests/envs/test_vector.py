"""The vectorized environment: every column is a scalar environment, exactly, across resets."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.data import load_bars
from raytrader.envs import EnvConfig, Market, TradingEnv, VectorTradingEnv
from raytrader.envs.scenarios import extreme_volatility
from raytrader.errors import ConfigError


@pytest.fixture(scope="module")
def markets() -> list[Market]:
    return [
        Market.from_bars(load_bars("goog")).split(0.7)[0],
        # a second market of the same timeframe: GOOG under the extreme-volatility scenario
        Market.from_bars(extreme_volatility(load_bars("goog")).bars).split(0.7)[0],
    ]


@pytest.mark.parametrize("reward", ["log_return", "risk_penalized", "differential_sharpe"])
def test_each_column_equals_a_scalar_env(markets: list[Market], reward: str) -> None:
    cfg = EnvConfig(episode_length=40, reward=reward)  # type: ignore[arg-type]
    n = 6
    venv = VectorTradingEnv(markets, n, cfg, seed=3)
    obs, _ = venv.reset(seed=3)
    starts = venv.start.copy()
    rng = np.random.default_rng(2)
    actions = rng.integers(0, 3, size=(60, n))
    observations, rewards, finals = [obs], [], []
    for a in actions:
        obs, r, _, _, info = venv.step(a)
        observations.append(obs)
        rewards.append(r)
        if "final_obs" in info:
            finals.append(info["final_obs"])
            new_starts = venv.start.copy()
    for j in range(n):
        env = TradingEnv(markets[j % 2], cfg, normalizer=venv.normalizer)
        o, _ = env.reset(options={"start": int(starts[j])})
        assert np.array_equal(o, observations[0][j])
        for k in range(40):
            o, r, _, trunc, _ = env.step(actions[k, j])
            assert r == rewards[k][j]
            if k < 39:
                assert np.array_equal(o, observations[k + 1][j])
        assert trunc
        assert np.array_equal(o, finals[0][j])  # the final observation before the autoreset
        # the next episode, started in the same step
        o, _ = env.reset(options={"start": int(new_starts[j])})
        assert np.array_equal(o, observations[40][j])
        for k in range(40, 60):
            o, r, *_ = env.step(actions[k, j])
            assert r == rewards[k][j]


def test_bad_input(markets: list[Market]) -> None:
    from raytrader.envs import CostRandomization

    with pytest.raises(ConfigError, match="no scenarios or cost randomization"):
        VectorTradingEnv(markets, 2, EnvConfig(cost_randomization=CostRandomization()))
    venv = VectorTradingEnv(markets, 2, EnvConfig(episode_length=10))
    with pytest.raises(ConfigError, match="reset"):
        venv.step(np.array([1, 1]))
    venv.reset(seed=0)
    with pytest.raises(ConfigError, match="discrete actions"):
        venv.step(np.array([1, 7]))


def test_a_v2_subset_column_equals_the_scalar_env() -> None:
    from raytrader.features import BAR_FEATURES_V2

    market = Market.from_bars(load_bars("goog"), BAR_FEATURES_V2).split(0.7)[0]
    subset = ("close_to_ema_20", "rsi_14", "bb_pctb")
    cfg = EnvConfig(feature_set="bar_features_v2", features=subset, episode_length=20)
    venv = VectorTradingEnv(market, 3, cfg, seed=5)
    assert venv.single_observation_space.shape == (len(subset) + 3,)
    assert venv.normalizer.names == subset
    obs, _ = venv.reset(seed=5)
    starts = venv.start.copy()
    actions = np.random.default_rng(1).integers(0, 3, size=(19, 3))
    observations = [obs]
    for a in actions:
        observations.append(venv.step(a)[0])
    for j in range(3):
        env = TradingEnv(market, cfg, normalizer=venv.normalizer)
        o, _ = env.reset(options={"start": int(starts[j])})
        assert np.array_equal(o, observations[0][j])
        for k, a in enumerate(actions[:, j]):
            o, *_ = env.step(a)
            assert np.array_equal(o, observations[k + 1][j])


def test_markets_of_another_feature_set_are_refused(markets: list[Market]) -> None:
    cfg = EnvConfig(feature_set="bar_features_v2", episode_length=10)
    with pytest.raises(ConfigError, match="carries bar_features_v1 but the environment observes"):
        VectorTradingEnv(markets, 2, cfg)
