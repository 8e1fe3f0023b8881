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


def test_a_bust_account_terminates_the_episode(splits) -> None:
    """Only a bust ends an episode (a margin call leaves the account trading:
    tests/envs/test_margin_env.py); the frictionless account's 10x short goes bust."""
    from raytrader.sim import FixedFraction

    cfg = EnvConfig(
        episode_length=400, sim=SimConfig(sizing=FixedFraction(fraction=10.0), margin=None)
    )
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


# ---- which features the agent observes ------------------------------------------------------------

SUBSET = ("rsi_14", "logret_1", "close_to_sma_20", "obv_flow_20")


@pytest.fixture(scope="module")
def goog_v2() -> Market:
    from raytrader.features import BAR_FEATURES_V2

    return Market.from_bars(load_bars("goog"), BAR_FEATURES_V2)


def test_default_config_observes_all_of_bar_features_v1(goog_market: Market) -> None:
    from raytrader.features import BAR_FEATURES_V1

    cfg = EnvConfig()
    assert cfg.feature_set == "bar_features_v1"
    assert cfg.features is None
    assert cfg.feature_names == tuple(BAR_FEATURES_V1.names)
    env = TradingEnv(goog_market, EnvConfig(episode_length=16))
    assert env.observation_space.shape == (70 + 3,)
    assert env.market is goog_market  # nothing selected, nothing copied


def test_a_subset_observes_the_full_sets_normalized_columns_in_its_order(goog_v2: Market) -> None:
    full = TradingEnv(goog_v2, EnvConfig(feature_set="bar_features_v2", episode_length=32))
    cfg = EnvConfig(feature_set="bar_features_v2", features=SUBSET, episode_length=32)
    sub = TradingEnv(goog_v2, cfg)
    assert sub.observation_space.shape == (len(SUBSET) + 3,)
    assert sub.normalizer.names == SUBSET == sub.market.feature_names
    cols = [goog_v2.feature_names.index(n) for n in SUBSET]
    obs_full, _ = full.reset(options={"start": 700})
    obs_sub, _ = sub.reset(options={"start": 700})
    for a in [2, 2, 0, 1, 2, 0, 0, 1]:
        assert np.array_equal(obs_sub, np.concatenate([obs_full[cols], obs_full[-3:]]))
        obs_full, r_full, *_ = full.step(a)
        obs_sub, r_sub, *_ = sub.step(a)
        assert r_full == r_sub  # the observation changes nothing the kernel does
    # the first usable bar does not move with the subset: same rows, same episodes
    assert sub.market.first == goog_v2.first


def test_the_served_policy_rebuilds_a_v2_subset_observation(goog_v2: Market) -> None:
    import pandas as pd

    from raytrader.registry import RLPolicyModel

    cfg = EnvConfig(feature_set="bar_features_v2", features=SUBSET, episode_length=32)
    env = TradingEnv(goog_v2, cfg)
    model = RLPolicyModel.__new__(RLPolicyModel)  # the pyfunc without a policy: its observation
    # what the pyfunc reads back from its artifacts: the env config and the normalizer
    model.env = EnvConfig.model_validate_json(cfg.model_dump_json())
    model.normalizer = FeatureNormalizer.from_dict(env.normalizer.to_dict())
    assert model.env.features == SUBSET
    obs, info = env.reset(options={"start": 900})
    for a in [2, 2, 2, 0]:
        obs, _, _, _, info = env.step(a)
        t = info["bar"]
        # a row of the whole v2 set, as a batch job would send it: the pyfunc picks its columns
        row = pd.DataFrame([goog_v2.features[t]], columns=list(goog_v2.feature_names))
        row["exposure"], row["unrealized"] = float(obs[-3]), float(obs[-2])
        row["time_in_position"] = float(env._held[0])
        assert np.array_equal(model.observations(row)[0], obs), t


def test_scenarios_recompute_the_observed_set_and_subset(goog_v2: Market) -> None:
    cfg = EnvConfig(
        feature_set="bar_features_v2",
        features=SUBSET,
        episode_length=32,
        scenarios=("extreme_volatility",),
        scenario_probability=1.0,
    )
    env = TradingEnv(goog_v2.split(0.7)[0], cfg)
    obs, _ = env.reset(seed=2)
    assert obs.shape == (len(SUBSET) + 3,)
    assert env._active is not env.market
    assert env._active.feature_set == "bar_features_v2"
    assert env._active.feature_names == SUBSET
    # 3x returns: the volatility-scaled features move, so the features were recomputed
    assert not np.array_equal(env._active.features, env.market.features)


def test_feature_set_and_subset_config_errors_name_the_problem(
    goog_market: Market, goog_v2: Market
) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown feature set 'bar_features_v9'.*bar_features_v2"
    ):
        EnvConfig.parse({"feature_set": "bar_features_v9"})
    with pytest.raises(
        ConfigError, match="features: 'sma_20' not in feature set 'bar_features_v2'"
    ):
        EnvConfig.parse({"feature_set": "bar_features_v2", "features": ["rsi_14", "sma_20"]})
    with pytest.raises(ConfigError, match="features: 'nope' not in feature set 'bar_features_v1'"):
        EnvConfig.parse({"features": ["nope"]})
    with pytest.raises(ConfigError, match="name at least one feature"):
        EnvConfig.parse({"features": []})
    with pytest.raises(ConfigError, match=r"\['rsi_14'\] named more than once"):
        EnvConfig.parse({"features": ["rsi_14", "rsi_14"]})
    v2 = EnvConfig(feature_set="bar_features_v2", episode_length=16)
    with pytest.raises(ConfigError, match="carries bar_features_v1 but the environment observes"):
        TradingEnv(goog_market, v2)
    v1_env = TradingEnv(goog_market, EnvConfig(episode_length=16))
    with pytest.raises(ConfigError, match="normalizer was fitted on other features"):
        TradingEnv(goog_v2, v2, normalizer=v1_env.normalizer)
    # the config round-trips with its subset
    cfg = EnvConfig(feature_set="bar_features_v2", features=SUBSET)
    assert EnvConfig.model_validate_json(cfg.model_dump_json()) == cfg
