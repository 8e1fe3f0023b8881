"""The trading environment: a gymnasium ``Env`` whose market simulation is the shared kernel.

Time. At bar *t*'s close the agent observes the features of bar *t* (known at that close) and its
account, and chooses a target position. The kernel records the decision
(:meth:`~raytrader.sim.Simulator.decide`), then advances bar *t + 1*: the order fills at its open
(slippage, commission), stops are checked, equity is marked at its close — and that is the step's
reward. The same targets given to a backtest (``run_targets``) produce the same trades and equity,
bar for bar (tested), because both are the kernel.

Observation (float32): the bar's row of the features the config observes (``feature_set``, all
of it or the ``features`` subset, in that order) normalized with statistics of the training split
(:class:`~raytrader.envs.normalize.FeatureNormalizer`; a short history comes from the lagged
features the feature set declares, so serving builds the same vector from one feature row),
then ``exposure`` (position value / equity), ``unrealized`` (open P&L as a fraction of the entry
value, signed) and ``time_in_position`` (bars held / episode length).

Actions: ``discrete`` {0: short, 1: flat, 2: long} → target -1 / 0 / +1; ``grid`` →
``linspace(-1, 1, grid_levels)[a]``; ``continuous`` → a target in [-1, 1]. With
``sim.allow_short=False`` the kernel turns short targets into flat.

Episodes start at a random bar of the split (or its first warm bar) and last
``episode_length`` steps (``truncated``); an account that goes bust (a liquidation leaving equity
<= 0) ends the episode (``terminated``); after a margin call with equity left it goes on. Optional
per-episode cost randomization and stress scenarios (see :mod:`raytrader.envs.scenarios`).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from raytrader.contract import ACCOUNT_COLUMNS
from raytrader.envs.config import EnvConfig
from raytrader.envs.market import Market
from raytrader.envs.normalize import FeatureNormalizer
from raytrader.envs.rewards import Reward
from raytrader.envs.scenarios import Scenario, apply_scenario
from raytrader.errors import ConfigError
from raytrader.sim import Simulator
from raytrader.sim import kernel as K

ACCOUNT_FEATURES = ACCOUNT_COLUMNS  # the account part of the observation, in this order
#: every observation component is clipped to [-OBS_BOUND, OBS_BOUND]
OBS_BOUND = 10.0


def action_space(config: EnvConfig) -> spaces.Space[Any]:
    if config.action == "discrete":
        return spaces.Discrete(3)
    if config.action == "grid":
        return spaces.Discrete(config.grid_levels)
    return spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)


def action_to_target(config: EnvConfig, action: Any) -> float:
    """The target position in [-1, 1] an action stands for."""
    if config.action == "continuous":
        value = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if not np.isfinite(value):
            raise ConfigError(f"continuous action {action!r} is not finite")
        return float(np.clip(value, -1.0, 1.0))
    n = 3 if config.action == "discrete" else config.grid_levels
    a = int(action)
    if not 0 <= a < n:
        raise ConfigError(f"action {action!r} outside the {n} discrete actions")
    return float(np.linspace(-1.0, 1.0, n)[a])


def account_features(
    sim: Simulator, close: np.ndarray, held: np.ndarray, episode_length: int
) -> np.ndarray:
    """(k x 3): exposure, unrealized P&L fraction, time in position — for every account."""
    units = sim.states[:, K.S_UNITS]
    avg = sim.states[:, K.S_AVG]
    equity = sim.states[:, K.S_EQUITY]
    with np.errstate(divide="ignore", invalid="ignore"):
        exposure = np.where(equity > 0, units * close / equity, 0.0)
        unreal = np.where((units != 0) & (avg > 0), np.sign(units) * (close - avg) / avg, 0.0)
    out = np.stack([exposure, unreal, held / episode_length], axis=1)
    return np.asarray(np.clip(np.nan_to_num(out), -OBS_BOUND, OBS_BOUND), dtype=np.float64)


def observation(normalized: np.ndarray, account: np.ndarray) -> np.ndarray:
    """The observation vector(s): normalized feature row(s), then the account values, clipped to
    ``±OBS_BOUND`` (NaN -> 0). One row ``(n_features,)`` + ``(3,)`` or many ``(k x ...)``; the
    environments and the served RL policy build it here, so they cannot disagree."""
    joined = np.concatenate([normalized, account], axis=-1)
    out: np.ndarray = np.clip(np.nan_to_num(joined), -OBS_BOUND, OBS_BOUND).astype(np.float32)
    return out


class TradingEnv(gym.Env[np.ndarray, Any]):
    """One account trading one market split (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(
        self,
        market: Market,
        config: EnvConfig | None = None,
        normalizer: FeatureNormalizer | None = None,
    ) -> None:
        self.config = config or EnvConfig()
        cfg = self.config
        market = market.observed(cfg)
        if market.n_usable < cfg.episode_length + 1:
            raise ConfigError(
                f"{market.bars.symbol}: {market.n_usable} usable bars in the split, an episode "
                f"needs {cfg.episode_length + 1}"
            )
        self.market = market
        self.normalizer = normalizer or FeatureNormalizer.fit(
            market.usable_features(), market.feature_names
        )
        if self.normalizer.names != market.feature_names:
            raise ConfigError(
                "the normalizer was fitted on other features than the environment observes "
                f"({cfg.feature_set}, {len(market.feature_names)} features)"
            )
        n_obs = len(market.feature_names) + len(ACCOUNT_FEATURES)
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(n_obs,), dtype=np.float32)
        self.action_space = action_space(cfg)
        self._scenarios: dict[str, tuple[Market, Scenario]] = {}
        self._reward = Reward(cfg, 1)
        self._sim: Simulator | None = None
        self._active = market
        self._participation: float | None = None
        self._z = self.normalizer.transform(market.features)
        self.t = 0
        self.start = 0
        self._held = np.zeros(1)
        self._target = 0.0
        self._equity = np.zeros(1)

    # -- episode -----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        cfg = self.config
        rng = self.np_random
        market, sim_cfg, self._participation = self.market, cfg.sim, None
        if cfg.scenarios and rng.random() < cfg.scenario_probability:
            name = cfg.scenarios[int(rng.integers(len(cfg.scenarios)))]
            market, scen = self._scenario(name, rng)
            slip = min(sim_cfg.slippage_bps * scen.slippage_multiplier, 999.0)
            sim_cfg = sim_cfg.model_copy(update={"slippage_bps": slip})
            self._participation = scen.participation
        if cfg.cost_randomization is not None:
            cr = cfg.cost_randomization
            sim_cfg = sim_cfg.model_copy(
                update={
                    "commission": float(rng.uniform(*cr.commission)),
                    "slippage_bps": float(rng.uniform(*cr.slippage_bps)),
                }
            )
        if self._active is not market:
            self._active = market
            self._z = self.normalizer.transform(market.features)
        start = (options or {}).get("start")
        last = market.hi - cfg.episode_length - 1
        if start is None:
            start = int(rng.integers(market.first, last + 1)) if cfg.random_start else market.first
        elif not market.first <= int(start) <= last:
            raise ConfigError(f"start {start} outside [{market.first}, {last}]")
        self.start = self.t = int(start)
        self._sim = Simulator(sim_cfg, market.bars.periods_per_year)
        self._equity = self._advance(self.t)
        self._reward.reset(self._equity)
        self._held[:] = 0.0
        self._target = 0.0
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        sim = self.simulator
        target = action_to_target(self.config, action)
        target = self._cap(target)
        sim.decide(target)
        self._target = target
        prev = self._equity
        self.t += 1
        self._equity = self._advance(self.t)
        reward = float(self._reward(prev, self._equity)[0])
        units = sim.states[0, K.S_UNITS]
        self._held = np.where(units != 0.0, self._held + 1.0, 0.0)
        terminated = bool(sim.states[0, K.S_BUST] != 0.0)
        truncated = self.t - self.start >= self.config.episode_length
        info = self._info()
        if terminated or truncated:
            # the episode's round trips as the kernel records them (bars counted from its start;
            # an open position closed at the last close, reason "open"), for the experiment store
            info["trades"] = self.simulator.trades(include_open=True)
        return self._obs(), reward, terminated, truncated, info

    # -- helpers -------------------------------------------------------------------------------
    def _advance(self, i: int) -> np.ndarray:
        m = self._active
        return self.simulator.advance(
            m.column("open")[i], m.column("high")[i], m.column("low")[i], m.column("close")[i]
        )

    def _cap(self, target: float) -> float:
        """Partial fills (``low_liquidity``): the position moves by at most ``participation`` of
        this bar's traded value relative to equity; the rest follows on later bars."""
        if self._participation is None:
            return target
        m = self._active
        value = m.column("volume")[self.t] * m.column("close")[self.t]
        step = self._participation * value / max(float(self._equity[0]), 1e-12)
        return float(np.clip(target, self._target - step, self._target + step))

    def _obs(self) -> np.ndarray:
        close = np.array([self._active.column("close")[self.t]])
        acct = account_features(self.simulator, close, self._held, self.config.episode_length)[0]
        return observation(self._z[self.t], acct)

    def _info(self) -> dict[str, Any]:
        return {
            "bar": self.t,
            "timestamp": self._active.bars.index[self.t],
            "equity": float(self._equity[0]),
            "units": float(self.simulator.states[0, K.S_UNITS]),
            "target": self._target,
            "close": float(self._active.column("close")[self.t]),
        }

    def _scenario(self, name: str, rng: np.random.Generator) -> tuple[Market, Scenario]:
        """Scenario markets are built once per name (the same features recomputed on the new
        bars)."""
        if name not in self._scenarios:
            scen = apply_scenario(name, self.market.bars, rng)
            self._scenarios[name] = (self.market.with_bars(scen.bars), scen)
        return self._scenarios[name]

    @property
    def simulator(self) -> Simulator:
        if self._sim is None:
            raise ConfigError("no episode yet: call reset() before step()")
        return self._sim
