"""The trading environment: gymnasium's checker, exact parity with a backtest on the kernel, no
lookahead, determinism, normalization fitted on the training split, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from raytrader.backtest.engine import run_targets
from raytrader.data import Bars, load_bars
from raytrader.envs import CostRandomization, EnvConfig, FeatureNormalizer, Market, TradingEnv
from raytrader.errors import ConfigError
from raytrader.sim import SimConfig, VolTarget
from raytrader.sim import kernel as K


@pytest.fixture(scope="module")
def goog_market() -> Market:
    return Market.from_bars(load_bars("goog"))


@pytest.fixture(scope="module")
def splits(goog_market: Market) -> tuple[Market, Market]:
    return goog_market.split(0.7)


@pytest.mark.parametrize("action", ["discrete", "grid", "continuous"])
@pytest.mark.parametrize("reward", ["log_return", "risk_penalized", "differential_sharpe"])
def test_passes_gymnasiums_env_checker(splits, action: str, reward: str) -> None:
    cfg = EnvConfig(action=action, reward=reward, episode_length=64)  # type: ignore[arg-type]
    check_env(TradingEnv(splits[0], cfg), skip_render_check=True)


def run_episode(
    env: TradingEnv, actions: np.ndarray, start: int
) -> tuple[list[float], list[float]]:
    _, info = env.reset(seed=0, options={"start": start})
    equity, targets = [info["equity"]], []
    for a in actions:
        _, _, terminated, truncated, info = env.step(a)
        equity.append(info["equity"])
        targets.append(info["target"])
        if terminated or truncated:
            break
    return equity, targets


def window(bars: Bars, start: int, n: int) -> Bars:
    mask = np.zeros(len(bars), dtype=bool)
    mask[start : start + n] = True
    return bars.head_mask(mask)


@pytest.mark.parametrize(
    ("action", "sim"),
    [
        ("discrete", SimConfig()),
        ("grid", SimConfig(stop_loss=0.03, take_profit=0.05, commission=0.002, units="whole")),
        ("continuous", SimConfig(sizing=VolTarget(lookback=10, max_leverage=2.0))),
    ],
)
def test_same_actions_give_the_backtests_trades_and_equity_exactly(
    goog_market: Market, action: str, sim: SimConfig
) -> None:
    cfg = EnvConfig(action=action, sim=sim, episode_length=300)  # type: ignore[arg-type]
    env = TradingEnv(goog_market, cfg)
    rng = np.random.default_rng(4)
    if action == "continuous":
        actions = rng.uniform(-1, 1, size=(300, 1)).astype(np.float32)
    else:
        n = 3 if action == "discrete" else cfg.grid_levels
        actions = np.repeat(rng.integers(0, n, size=30), 10)  # hold each for 10 bars
    start = goog_market.first + 500
    equity, targets = run_episode(env, actions, start)
    bars = window(goog_market.bars, start, len(equity))
    out, _ = run_targets(bars, np.array([*targets, np.nan]), sim)
    assert np.array_equal(out.equity[:, 0], np.array(equity))
    assert np.array_equal(out.trades, env.simulator.trades(), equal_nan=True)
    assert len(out.trades) > 3


def test_observation_at_t_uses_no_later_bar(goog_market: Market) -> None:
    """Cut the series right after bar t: the observation at t is unchanged."""
    actions = np.array([2, 2, 0, 0, 1] * 4)[:19]
    env = TradingEnv(goog_market, EnvConfig(episode_length=19))
    env.reset(options={"start": 1000})
    for a in actions:
        obs_full, *_ = env.step(a)
    t = env.t
    cut = Market.from_bars(window(goog_market.bars, 0, t + 1))  # bars 0..t, nothing later
    env_cut = TradingEnv(cut, EnvConfig(episode_length=19), normalizer=env.normalizer)
    env_cut.reset(options={"start": 1000})
    for a in actions:
        obs_cut, *_ = env_cut.step(a)
    assert env_cut.t == t == len(cut.bars) - 1
    assert np.array_equal(obs_cut, obs_full)


def test_normalizer_is_fitted_on_the_training_split_only(splits) -> None:
    train, test = splits
    env = TradingEnv(train, EnvConfig(episode_length=64))
    expected = FeatureNormalizer.fit(train.usable_features(), train.feature_names)
    assert np.array_equal(env.normalizer.mean, expected.mean)
    test_env = TradingEnv(test, EnvConfig(episode_length=64), normalizer=env.normalizer)
    assert test_env.normalizer is env.normalizer
    assert not np.allclose(
        FeatureNormalizer.fit(test.usable_features(), test.feature_names).mean, expected.mean
    )
    again = FeatureNormalizer.from_dict(env.normalizer.to_dict())
    assert np.array_equal(again.std, env.normalizer.std)
    assert again.names == env.normalizer.names


def test_same_seed_same_trajectory_with_randomized_costs_and_scenarios(splits) -> None:
    cfg = EnvConfig(
        episode_length=80,
        cost_randomization=CostRandomization(),
        scenarios=("flash_crash", "low_liquidity", "extreme_volatility"),
        scenario_probability=0.7,
        reward="risk_penalized",
        risk_penalty="drawdown",
    )

    def trajectory(seed: int) -> list[np.ndarray]:
        env = TradingEnv(splits[0], cfg)
        env.action_space.seed(seed)
        out = []
        for episode in range(4):
            obs, _ = env.reset(seed=seed if episode == 0 else None)
            out.append(obs)
            done = False
            while not done:
                obs, r, term, trunc, _ = env.step(env.action_space.sample())
                out.append(np.append(obs, r))
                done = term or trunc
        return out

    a, b = trajectory(9), trajectory(9)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, trajectory(10), strict=True))


def test_low_liquidity_fills_partially(splits) -> None:
    cfg = EnvConfig(episode_length=30, scenarios=("low_liquidity",), scenario_probability=1.0)
    env = TradingEnv(splits[0], cfg)
    env.reset(seed=1)
    m = env._active
    value = m.column("volume")[env.t] * m.column("close")[env.t]
    env._participation = 0.3 * env._sim.equity[0] / value  # this bar can move 30% of equity
    _, _, _, _, info = env.step(2)
    assert info["target"] == pytest.approx(0.3)
    targets = [info["target"]]
    for _ in range(5):
        _, _, _, _, info = env.step(2)
        targets.append(info["target"])
    assert targets == sorted(targets)
    assert targets[-1] == 1.0  # the rest follows on later bars


def test_liquidation_terminates_the_episode(splits) -> None:
    from raytrader.sim import FixedFraction

    cfg = EnvConfig(episode_length=400, sim=SimConfig(sizing=FixedFraction(fraction=10.0)))
    env = TradingEnv(splits[0], cfg)
    env.reset(seed=0, options={"start": splits[0].first})
    terminated = False
    for _ in range(400):
        _, _, terminated, truncated, _ = env.step(0)  # 10x short through a rising market
        if terminated or truncated:
            break
    assert terminated
    assert env.simulator.states[0, K.S_BUST] == 1.0


def test_bad_input_is_refused(splits) -> None:
    with pytest.raises(ValueError, match="next_open"):
        EnvConfig(sim=SimConfig(fill="close"))
    with pytest.raises(ValueError, match="scenarios"):
        EnvConfig(scenario_probability=0.5)
    with pytest.raises(ConfigError, match="an episode needs"):
        TradingEnv(splits[1], EnvConfig(episode_length=10_000))
    env = TradingEnv(splits[0], EnvConfig(episode_length=10))
    with pytest.raises(ConfigError, match="reset"):
        env.step(1)
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="outside the 3 discrete actions"):
        env.step(3)
    with pytest.raises(ConfigError, match="start"):
        env.reset(options={"start": 0})
