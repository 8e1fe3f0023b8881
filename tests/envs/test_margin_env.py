"""The margin account in the RL environments: the kernel's margin calls, borrow fees and financing
reach the scalar and the vectorized environment unchanged (same trades and equity as a backtest), a
margin call that leaves equity does not end the episode (only a bust does), and per-episode cost
randomization keeps the margin."""

from __future__ import annotations

import numpy as np
import pytest

from raytrader.backtest.engine import run_targets
from raytrader.data import Bars, load_bars
from raytrader.envs import CostRandomization, EnvConfig, Market, TradingEnv, VectorTradingEnv
from raytrader.sim import FixedFraction, MarginConfig, SimConfig
from raytrader.sim import kernel as K

# 3x asked, cut to about 2x by the 50% initial margin; carry rates high enough to matter per bar
COSTLY = SimConfig(
    sizing=FixedFraction(fraction=3.0),
    margin=MarginConfig(borrow_rate=0.5, financing_rate=0.8),
)


@pytest.fixture(scope="module")
def goog_market() -> Market:
    return Market.from_bars(load_bars("goog"))


def window(bars: Bars, start: int, n: int) -> Bars:
    mask = np.zeros(len(bars), dtype=bool)
    mask[start : start + n] = True
    return bars.head_mask(mask)


def run_episode(
    env: TradingEnv, actions: np.ndarray, start: int
) -> tuple[list[float], list[float], list[float], bool]:
    """(equity per bar, targets, rewards, terminated) of one episode from ``start``."""
    _, info = env.reset(seed=0, options={"start": start})
    equity, targets, rewards = [info["equity"]], [], []
    terminated = False
    for a in actions:
        _, reward, terminated, truncated, info = env.step(a)
        equity.append(info["equity"])
        targets.append(info["target"])
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return equity, targets, rewards, terminated


def test_env_default_sim_is_the_margin_account_and_names_it_in_config_files() -> None:
    assert EnvConfig().sim.margin == MarginConfig()
    cfg = EnvConfig.model_validate({"sim": {"margin": {"borrow_rate": 0.01}}})
    assert cfg.sim.margin is not None
    assert cfg.sim.margin.borrow_rate == 0.01
    assert EnvConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert EnvConfig.model_validate({"sim": {"margin": None}}).sim.margin is None


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_leveraged_episode_gives_the_backtests_trades_and_equity_exactly(
    goog_market: Market, action: str
) -> None:
    cfg = EnvConfig(action=action, sim=COSTLY, episode_length=300)  # type: ignore[arg-type]
    env = TradingEnv(goog_market, cfg)
    rng = np.random.default_rng(7)
    if action == "continuous":
        actions = np.repeat(rng.uniform(-1, 1, size=(30, 1)), 10, axis=0).astype(np.float32)
    else:
        actions = np.repeat(rng.integers(0, 3, size=30), 10)
    start = goog_market.first + 300
    equity, targets, _, _ = run_episode(env, actions, start)
    bars = window(goog_market.bars, start, len(equity))
    out, _ = run_targets(bars, np.array([*targets, np.nan]), COSTLY)
    assert np.array_equal(out.equity[:, 0], np.array(equity))
    trades = env.simulator.trades()
    assert np.array_equal(out.trades, trades, equal_nan=True)
    assert trades[:, K.T_CARRY].sum() > 0.0  # borrow fees and financing were charged
    assert len(trades) > 3


def test_margin_call_leaves_the_episode_running_with_its_equity(goog_market: Market) -> None:
    """A 2x short through GOOG's first rally: liquidated at 30% maintenance, not at zero. That is no
    bust: the episode goes on, flat while the action stays short, until it is truncated."""
    sim = SimConfig(sizing=FixedFraction(fraction=2.0))
    env = TradingEnv(goog_market, EnvConfig(sim=sim, episode_length=400))
    actions = np.zeros(400, dtype=np.int64)  # always short
    equity, _, rewards, terminated = run_episode(env, actions, goog_market.first)
    assert not terminated
    assert len(rewards) == 400  # truncated at the episode length, not ended by the margin call
    assert env.simulator.states[0, K.S_BUST] == 0.0
    (call,) = env.simulator.trades()  # the one trade: the margin call
    assert call[K.T_REASON] == K.REASON_LIQUIDATION
    bar = int(call[K.T_EXIT_BAR])  # bars of the simulator = steps of the episode
    assert min(equity) > 0.0
    assert np.isfinite(rewards).all()
    # what is left is the maintenance margin less the exit's costs: about 30% of the short's value
    value = -call[K.T_UNITS] * call[K.T_EXIT_PRICE]
    assert 0.25 * value < equity[bar] < 0.30 * value
    # flat on it for the rest of the episode: the target never changed
    assert (np.array(equity[bar:]) == equity[bar]).all()
    assert (np.array(rewards[bar:]) == 0.0).all()


def test_after_a_margin_call_a_new_action_trades_again_as_in_a_backtest(
    goog_market: Market,
) -> None:
    """Short, margin-called at step 55; long (action 2) from step 70: a new 2x long opens from the
    equity the call left, and the episode equals the backtest of the same targets, trades and
    equity."""
    sim = SimConfig(sizing=FixedFraction(fraction=2.0))
    env = TradingEnv(goog_market, EnvConfig(sim=sim, episode_length=120))
    actions = np.zeros(120, dtype=np.int64)
    actions[70:] = 2
    start = goog_market.first
    equity, targets, _, terminated = run_episode(env, actions, start)
    assert not terminated
    trades = env.simulator.trades()
    assert list(trades[:, K.T_REASON]) == [K.REASON_LIQUIDATION, K.REASON_OPEN]
    call, new = trades
    assert call[K.T_EXIT_BAR] == 55.0
    assert new[K.T_ENTRY_BAR] == 71.0  # decided at step 70's close, filled at the next open
    # about 2x the equity the call left (the initial margin's cap, less costs)
    assert 1.9 * equity[70] < new[K.T_UNITS] * new[K.T_ENTRY_PRICE] < 2.0 * equity[70]
    bars = window(goog_market.bars, start, len(equity))
    out, _ = run_targets(bars, np.array([*targets, np.nan]), sim)
    assert np.array_equal(out.equity[:, 0], np.array(equity))
    assert np.array_equal(out.trades, trades, equal_nan=True)


def test_only_a_bust_ends_the_episode(goog_market: Market) -> None:
    """Without margin a 10x short is liquidated once equity at a close is <= 0: the account is
    bust and the episode terminates there (with margin, only a gap through zero equity does it)."""
    sim = SimConfig(sizing=FixedFraction(fraction=10.0), margin=None)
    env = TradingEnv(goog_market, EnvConfig(sim=sim, episode_length=400))
    actions = np.zeros(400, dtype=np.int64)
    equity, _, rewards, terminated = run_episode(env, actions, goog_market.first)
    assert terminated
    assert len(rewards) < 400
    assert env.simulator.states[0, K.S_BUST] == 1.0
    (t,) = env.simulator.trades()
    assert t[K.T_REASON] == K.REASON_LIQUIDATION
    assert t[K.T_EXIT_BAR] == len(rewards)  # the last step
    assert equity[-1] <= 0.0
    assert np.isfinite(rewards).all()


def test_vector_env_column_goes_on_after_a_margin_call(goog_market: Market) -> None:
    sim = SimConfig(sizing=FixedFraction(fraction=2.0))
    venv = VectorTradingEnv(goog_market, 2, EnvConfig(sim=sim, episode_length=100), seed=1)
    venv.reset(seed=1, options={"starts": [goog_market.first, goog_market.first]})
    actions = np.zeros((100, 2), dtype=np.int64)  # both always short
    actions[70:, 1] = 1  # column 1 goes flat after the call: a change, but nothing to close
    for k in range(99):
        _, _, terminated, truncated, infos = venv.step(actions[k])
        assert not terminated.any()
        assert not truncated.any()
        assert (infos["equity"] > 0.0).all()
    trades = venv._sim.trades()
    assert list(trades[:, K.T_REASON]) == [K.REASON_LIQUIDATION] * 2
    assert (trades[:, K.T_EXIT_BAR] == 55.0).all()


def test_cost_randomization_keeps_the_margin_account(goog_market: Market) -> None:
    cfg = EnvConfig(sim=COSTLY, episode_length=50, cost_randomization=CostRandomization())
    env = TradingEnv(goog_market, cfg)
    env.reset(seed=3)
    params = env.simulator.params
    commission = params[K.P_COMM]
    assert commission != COSTLY.commission  # randomized
    assert params[K.P_MARGIN] == 1.0
    assert params[K.P_FMAX] == pytest.approx((1 + commission) / (0.5 + commission), rel=1e-15)
    assert params[K.P_BORROW] == pytest.approx(0.5 / 252.0, rel=1e-15)
    assert params[K.P_FINANCE] == pytest.approx(0.8 / 252.0, rel=1e-15)


def test_vector_env_columns_equal_the_scalar_env_with_margin(goog_market: Market) -> None:
    market = goog_market.split(0.7)[0]
    cfg = EnvConfig(sim=COSTLY, episode_length=60)
    n = 4
    venv = VectorTradingEnv(market, n, cfg, seed=11)
    venv.reset(seed=11)
    starts = venv.start.copy()
    actions = np.random.default_rng(5).integers(0, 3, size=(60, n))
    rewards, done = [], np.zeros(n, dtype=bool)
    for a in actions:
        _, r, terminated, truncated, _ = venv.step(a)
        rewards.append(np.where(done, np.nan, r))  # a column's first episode only
        done |= terminated | truncated
    for j in range(n):
        env = TradingEnv(market, cfg, normalizer=venv.normalizer)
        env.reset(options={"start": int(starts[j])})
        for k in range(60):
            _, r, terminated, truncated, _ = env.step(actions[k, j])
            assert r == rewards[k][j]
            if terminated or truncated:
                break
