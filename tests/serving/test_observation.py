"""The RL member sees, from one served row and the caller's account, exactly the observation the
environment built for that bar in training."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raytrader.data.sources import load_bars
from raytrader.envs import EnvConfig, TradingEnv
from raytrader.envs.market import Market
from raytrader.registry import RLPolicyModel


def test_served_row_and_account_give_the_envs_observation() -> None:
    config = EnvConfig(episode_length=64)
    market = Market.from_bars(load_bars("goog"))
    env = TradingEnv(market, config)
    model = RLPolicyModel.__new__(RLPolicyModel)  # the pyfunc without a policy: its observation
    model.normalizer, model.env = env.normalizer, config
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):
        obs, _, done, truncated, info = env.step(int(rng.integers(0, 3)))
        if done or truncated:
            break
        t = info["bar"]
        row = pd.DataFrame([market.features[t]], columns=list(market.feature_names))
        # what a caller sends: its position (exposure), unrealized return, bars held
        row["exposure"] = float(obs[-3])
        row["unrealized"] = float(obs[-2])
        row["time_in_position"] = float(env._held[0])
        served = model.observations(row)[0]
        assert served.dtype == obs.dtype
        assert np.array_equal(served, obs), t
        checked += 1
    assert checked >= 30
