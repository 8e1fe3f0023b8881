"""Many accounts in one numpy step: the throughput variant of :class:`~raytrader.envs.TradingEnv`.

``num_envs`` accounts trade windows of one or more markets (column *j* trades market
``j % len(markets)``), all advanced by one kernel call per step
(:class:`~raytrader.sim.Simulator` with one column per account). Same time convention,
observation, actions and rewards as the scalar environment; each column equals a scalar
environment run with the same start and actions (tested). Episodes end and restart per column
(gymnasium's same-step autoreset: the returned observation is the new episode's first, the final
one is in ``infos["final_obs"]``). Cost randomization and stress scenarios are scalar-env features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from raytrader.envs.config import EnvConfig
from raytrader.envs.market import Market
from raytrader.envs.normalize import FeatureNormalizer
from raytrader.envs.rewards import Reward
from raytrader.envs.trading import (
    ACCOUNT_FEATURES,
    OBS_BOUND,
    account_features,
    action_space,
    observation,
)
from raytrader.errors import ConfigError
from raytrader.sim import Simulator
from raytrader.sim import kernel as K


class VectorTradingEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(
        self,
        markets: Market | Sequence[Market],
        num_envs: int,
        config: EnvConfig | None = None,
        normalizer: FeatureNormalizer | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = cfg = config or EnvConfig()
        if cfg.scenarios or cfg.cost_randomization is not None:
            raise ConfigError(
                "the vectorized environment has no scenarios or cost randomization; "
                "use TradingEnv for those"
            )
        ms = [m.observed(cfg) for m in ([markets] if isinstance(markets, Market) else markets)]
        if not ms or num_envs < 1:
            raise ConfigError("need at least one market and one environment")
        names = cfg.feature_names
        for m in ms:
            if m.n_usable < cfg.episode_length + 1:
                raise ConfigError(
                    f"{m.bars.symbol}: {m.n_usable} usable bars, an episode needs "
                    f"{cfg.episode_length + 1}"
                )
        ppy = {m.bars.periods_per_year for m in ms}
        if len(ppy) != 1:
            raise ConfigError("every market must have the same timeframe (periods per year)")
        self.markets = ms
        self.normalizer = normalizer or FeatureNormalizer.fit(
            np.concatenate([m.usable_features() for m in ms]), names
        )
        if self.normalizer.names != names:
            raise ConfigError(
                "the normalizer was fitted on other features than the environment observes "
                f"({cfg.feature_set}, {len(names)} features)"
            )
        self.num_envs = num_envs
        n_obs = len(names) + len(ACCOUNT_FEATURES)
        self.single_observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(n_obs,), dtype=np.float32
        )
        self.single_action_space = action_space(cfg)
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(num_envs, n_obs), dtype=np.float32
        )
        self.action_space = (
            spaces.MultiDiscrete(np.full(num_envs, self.single_action_space.n))
            if isinstance(self.single_action_space, spaces.Discrete)
            else spaces.Box(-1.0, 1.0, shape=(num_envs, 1), dtype=np.float32)
        )
        # stacked arrays: row = market, padded to the longest series
        width = max(len(m.bars) for m in ms)
        self._prices = {
            c: np.stack([np.pad(m.column(c), (0, width - len(m.bars))) for m in ms])
            for c in ("open", "high", "low", "close")
        }
        self._z = np.stack(
            [
                np.pad(self.normalizer.transform(m.features), ((0, width - len(m.bars)), (0, 0)))
                for m in ms
            ]
        ).astype(np.float32)
        self._market_of = np.arange(num_envs) % len(ms)
        self._first = np.array([m.first for m in ms])[self._market_of]
        self._last = np.array([m.hi - cfg.episode_length - 1 for m in ms])[self._market_of]
        n_actions = 3 if cfg.action == "discrete" else cfg.grid_levels
        self._levels = np.linspace(-1.0, 1.0, n_actions)
        self._sim = Simulator(cfg.sim, ms[0].bars.periods_per_year, n_columns=num_envs)
        self._reward = Reward(cfg, num_envs)
        self._rng = np.random.default_rng(seed)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.start = np.zeros(num_envs, dtype=np.int64)
        self._held = np.zeros(num_envs)
        self._equity = np.zeros(num_envs)
        self._started = False

    # -- API -----------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed if isinstance(seed, int) else list(seed))
        starts = (options or {}).get("starts")
        self.start = self._draw_starts(np.arange(self.num_envs), starts)
        self.t = self.start.copy()
        self._sim = Simulator(self.config.sim, self.markets[0].bars.periods_per_year, self.num_envs)
        self._equity = self._sim.advance(*self._prices_at(self.t))
        self._reward.reset(self._equity)
        self._held[:] = 0.0
        self._started = True
        return self._obs(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise ConfigError("call reset() before step()")
        targets = self._targets(actions)
        self._sim.decide(targets)
        prev = self._equity
        self.t += 1
        self._equity = self._sim.advance(*self._prices_at(self.t))
        rewards = self._reward(prev, self._equity)
        units = self._sim.states[:, K.S_UNITS]
        self._held = np.where(units != 0.0, self._held + 1.0, 0.0)
        terminated = self._sim.states[:, K.S_BUST] != 0.0
        truncated = (self.t - self.start >= self.config.episode_length) & ~terminated
        obs = self._obs()
        infos: dict[str, Any] = {"equity": self._equity.copy()}
        done = terminated | truncated
        if done.any():
            cols = np.flatnonzero(done)
            infos["final_obs"] = obs[cols].copy()
            infos["_final_obs"] = done.copy()
            infos["final_equity"] = self._equity[cols].copy()
            self.start[cols] = self._draw_starts(cols, None)
            self.t[cols] = self.start[cols]
            self._sim.restart(cols, *(p[cols] for p in self._prices_at(self.t)))
            self._equity = self._sim.equity
            self._reward.reset(self._equity, done)
            self._held[cols] = 0.0
            obs[cols] = self._obs()[cols]
        return obs, rewards.astype(np.float64), terminated, truncated, infos

    # -- helpers -------------------------------------------------------------------------------
    def _draw_starts(self, cols: np.ndarray, given: Any) -> np.ndarray:
        if given is not None:
            s = np.asarray(given, dtype=np.int64).reshape(-1)[: len(cols)]
            if (
                s.shape[0] != len(cols)
                or (s < self._first[cols]).any()
                or (s > self._last[cols]).any()
            ):
                raise ConfigError("options['starts']: one start per env, inside each market split")
            return s
        if not self.config.random_start:
            first: np.ndarray = self._first[cols].copy()
            return first
        starts: np.ndarray = self._rng.integers(self._first[cols], self._last[cols] + 1)
        return starts

    def _prices_at(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        m = self._market_of
        out: tuple[np.ndarray, ...] = tuple(
            self._prices[c][m, t] for c in ("open", "high", "low", "close")
        )
        return out

    def _targets(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        if self.config.action == "continuous":
            t = a.reshape(self.num_envs, -1)[:, 0].astype(np.float64)
            if not np.isfinite(t).all():
                raise ConfigError("continuous actions must be finite")
            return np.clip(t, -1.0, 1.0)
        idx = a.reshape(self.num_envs).astype(np.int64)
        if (idx < 0).any() or (idx >= len(self._levels)).any():
            raise ConfigError(f"actions outside the {len(self._levels)} discrete actions")
        levels: np.ndarray = self._levels[idx]
        return levels

    def _obs(self) -> np.ndarray:
        close = self._prices["close"][self._market_of, self.t]
        acct = account_features(self._sim, close, self._held, self.config.episode_length)
        return observation(self._z[self._market_of, self.t], acct)
