"""RL agents on the trading environment with RLlib (new API stack, torch): PPO and the DQN family.

``train_rl(config)`` trains on the training split of ``config.data``, checkpoints every
``checkpoint_every`` iterations under ``<output_dir>/checkpoints/`` and, when started again with
the same output directory, resumes from the newest complete checkpoint (a killed run loses at most
``checkpoint_every - 1`` iterations). ``evaluate`` replays the greedy policy over the held-out
later split as one episode and backtests its targets on the kernel, side by side with buy-and-hold
and ``ma_cross`` on the same bars and costs.

DQN ("Rainbow" parts RLlib 2.60 supports on its new API stack with torch): double Q, dueling heads,
n-step returns, prioritized replay and a distributional head (``num_atoms > 1``). Noisy nets exist
only in RLlib's old TensorFlow stack and are not offered.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from raytrader import wiring
from raytrader.config import StrictConfig
from raytrader.db.store import StepSampling
from raytrader.envs import EnvConfig, Market, TradingEnv
from raytrader.errors import ConfigError
from raytrader.features.matrix import FeatureSource
from raytrader.models.rl_policy import greedy_policy

ENV_NAME = "raytrader-trading"


class DQNOptions(StrictConfig):
    double_q: bool = True
    dueling: bool = True
    n_step: int = Field(default=3, ge=1, le=50)
    prioritized_replay: bool = True
    #: > 1: a distributional (C51) head over [v_min, v_max]
    num_atoms: int = Field(default=1, ge=1, le=201)
    v_min: float = -1.0
    v_max: float = 1.0
    target_network_update_freq: int = Field(default=500, ge=1)
    replay_capacity: int = Field(default=50_000, ge=100)
    epsilon_timesteps: int = Field(default=10_000, ge=1)


class RLConfig(StrictConfig):
    """One RL training run (the ``train_rl`` pipeline's config file)."""

    algo: Literal["ppo", "dqn"] = "ppo"
    data: str = Field(
        default="goog", description="load_bars spec: bundled name, synthetic:..., path"
    )
    #: where features come from: auto (Feast when the stack env is exported) | batch | feast.
    #: Feast holds ``bar_features_v1`` only: another ``env.feature_set`` is computed by the batch
    #: engine under ``auto`` and refused under ``feast``
    feature_source: FeatureSource = "auto"
    train_fraction: float = Field(default=0.7, gt=0.0, lt=1.0)
    env: EnvConfig = Field(default_factory=EnvConfig)
    iterations: int = Field(default=20, ge=1)
    checkpoint_every: int = Field(default=5, ge=1)
    num_env_runners: int = Field(default=0, ge=0, le=64)
    seed: int = 0
    lr: float = Field(default=3e-4, gt=0.0)
    gamma: float = Field(default=0.99, gt=0.0, le=1.0)
    train_batch_size: int = Field(default=2048, ge=32)
    hidden: tuple[int, ...] = (64, 64)
    # PPO
    minibatch_size: int = Field(default=256, ge=8)
    num_epochs: int = Field(default=4, ge=1)
    entropy_coeff: float = Field(default=0.0, ge=0.0)
    dqn: DQNOptions = Field(default_factory=DQNOptions)
    output_dir: str = "runs/rl"
    #: track the run in MLflow (the stack's server via MLFLOW_TRACKING_URI, else SQLite under
    #: output_dir); a resumed run continues the same MLflow run
    mlflow: bool = True
    tracking_uri: str | None = None
    #: register the trained policy under this name (a pyfunc in the run's MLflow run)
    register_as: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    #: write the run, every training episode (sampled steps, trades) and the held-out evaluation
    #: to the experiment store (RAYTRADER_DB_URL; raytrader.training.episodes)
    record: bool = True
    #: which steps of each episode the store keeps
    record_steps: StepSampling = Field(
        default_factory=lambda: StepSampling(every=1, max_per_episode=2000)
    )

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.register_as is not None and not self.mlflow:
            raise ValueError("register_as needs mlflow: true (the policy is logged into its run)")
        if self.algo == "dqn" and self.env.action == "continuous":
            raise ValueError("dqn needs a discrete action space: env.action 'discrete' or 'grid'")
        if self.algo == "ppo" and self.minibatch_size > self.train_batch_size:
            raise ValueError("minibatch_size must not exceed train_batch_size")
        if self.feature_source == "feast" and self.env.feature_set != served_feature_set():
            raise ValueError(
                f"feature_source feast serves {served_feature_set()} only; env.feature_set "
                f"{self.env.feature_set} needs feature_source batch (or auto)"
            )
        return self


def served_feature_set() -> str:
    """The feature set Feast stores and serves (its feature view)."""
    from raytrader.features.feast_repo import FEATURE_VIEW

    return FEATURE_VIEW


def feature_source(config: RLConfig) -> Literal["batch", "feast"]:
    """Where the run's features come from: ``feature_source`` resolved, and ``batch`` for a
    feature set Feast does not hold."""
    from raytrader.features.matrix import resolve_source

    if config.env.feature_set != served_feature_set():
        return "batch"
    return resolve_source(config.feature_source)


def feature_tags(config: RLConfig) -> dict[str, str]:
    """What a run and a registered policy record about their observation: the feature set, the
    observed subset (``all`` or comma-separated names, in order) and the Feast feature service
    (``none`` for a set no feature service serves, which the decision service then refuses)."""
    from raytrader.contract import FEATURE_SERVICE

    env = config.env
    return {
        "raytrader.feature_set": env.feature_set,
        "raytrader.features": "all" if env.features is None else ",".join(env.features),
        "raytrader.feature_service": (
            FEATURE_SERVICE if env.feature_set == served_feature_set() else "none"
        ),
    }


def full_market(config: RLConfig) -> Market:
    """All of ``config.data`` with the features of ``env.feature_set`` (:func:`feature_source`:
    Feast or the batch engine)."""
    from raytrader.data.sources import load_bars
    from raytrader.features import get_feature_set
    from raytrader.features.matrix import training_features

    bars = load_bars(config.data)
    if config.env.feature_set != served_feature_set():
        return Market.from_bars(bars, get_feature_set(config.env.feature_set))
    return Market.from_bars(bars, features=training_features(bars, feature_source(config)))


def load_market(config: RLConfig) -> tuple[Market, Market]:
    """(train, test) splits of ``config.data``; features taken once for the whole series."""
    return full_market(config).split(config.train_fraction)


def make_env(env_config: dict[str, Any]) -> TradingEnv:
    """RLlib's env creator: every env runner rebuilds the training env from the run's config."""
    config = RLConfig.model_validate(env_config["raytrader"])
    train, _ = load_market(config)
    return TradingEnv(train, config.env)


def algorithm_config(config: RLConfig, store: dict[str, Any] | None = None) -> Any:
    """The RLlib ``AlgorithmConfig`` of a run (new API stack, torch, seeded); with ``store``
    (:func:`raytrader.training.episodes.store_env_config`), every finished episode is written to
    the experiment store."""
    from ray.rllib.algorithms.dqn import DQNConfig as _DQN
    from ray.rllib.algorithms.ppo import PPOConfig as _PPO
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    # RLlib's config classes are unannotated; treat them as Any rather than ignore each call
    ppo_config: Any = _PPO
    dqn_config: Any = _DQN

    model = DefaultModelConfig(fcnet_hiddens=list(config.hidden), fcnet_activation="tanh")
    env_config: dict[str, Any] = {"raytrader": config.model_dump(mode="json")}
    if store is not None:
        from raytrader.training.episodes import STORE_KEY

        env_config[STORE_KEY] = store
    if config.algo == "ppo":
        algo: Any = ppo_config().training(
            lr=config.lr,
            gamma=config.gamma,
            train_batch_size_per_learner=config.train_batch_size,
            minibatch_size=config.minibatch_size,
            num_epochs=config.num_epochs,
            entropy_coeff=config.entropy_coeff,
        )
    else:
        d = config.dqn
        buffer: dict[str, Any] = {
            "type": "PrioritizedEpisodeReplayBuffer"
            if d.prioritized_replay
            else "EpisodeReplayBuffer",
            "capacity": d.replay_capacity,
        }
        if d.prioritized_replay:
            buffer.update(alpha=0.6, beta=0.4)
        algo = dqn_config().training(
            lr=config.lr,
            gamma=config.gamma,
            train_batch_size_per_learner=min(config.train_batch_size, 512),
            double_q=d.double_q,
            dueling=d.dueling,
            n_step=d.n_step,
            num_atoms=d.num_atoms,
            v_min=d.v_min,
            v_max=d.v_max,
            noisy=False,
            target_network_update_freq=d.target_network_update_freq,
            replay_buffer_config=buffer,
            epsilon=[(0, 1.0), (d.epsilon_timesteps, 0.02)],
        )
    built = (
        algo.environment(ENV_NAME, env_config=env_config)
        .framework("torch")
        .env_runners(num_env_runners=config.num_env_runners)
        .rl_module(model_config=model)
        .debugging(seed=config.seed)
    )
    if store is not None:
        from raytrader.training.episodes import recorder

        built = built.callbacks(recorder())
    return built


def build_algo(config: RLConfig, store: dict[str, Any] | None = None) -> Any:
    """The RLlib algorithm of a run, its env creator registered in this process (Ray must be up)."""
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_env)
    return algorithm_config(config, store).build_algo()


def train_step(algo: Any) -> dict[str, float]:
    """One RLlib training iteration; the row of metrics a run logs for it."""
    runners = algo.train().get("env_runners", {})
    return {
        "iteration": float(algo.iteration),
        "episode_return_mean": float(runners.get("episode_return_mean", np.nan)),
        "env_steps": float(runners.get("num_env_steps_sampled_lifetime", np.nan)),
    }


class RunTracker:
    """The MLflow run of one training run: created once, its id kept in ``<output_dir>/mlflow_run``
    so a resumed run goes on logging to it; each iteration's metrics go in one batch call."""

    def __init__(self, config: RLConfig) -> None:
        from raytrader.tracking import experiment_id

        out = Path(config.output_dir)
        self.uri, self.client = wiring.mlflow(config.tracking_uri, out)
        marker = out / "mlflow_run"
        if marker.exists():
            self.run_id = marker.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        exp = experiment_id(self.client, f"raytrader-rl-{config.algo}", out, self.uri)
        run = self.client.create_run(
            exp,
            run_name=out.name,
            tags={
                "raytrader.kind": "rl",
                **feature_tags(config),
                "raytrader.data": config.data,
                "raytrader.feature_source": feature_source(config),
            },
        )
        self.run_id = run.info.run_id
        for key in ("algo", "data", "train_fraction", "lr", "gamma", "train_batch_size", "seed"):
            self.client.log_param(self.run_id, key, getattr(config, key))
        self.client.log_dict(self.run_id, config.model_dump(mode="json"), "config.json")
        marker.write_text(self.run_id)

    def iteration(self, step: int, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in row.items()
            if k != "iteration" and np.isfinite(v)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, checkpoint: str | None) -> None:
        if checkpoint is not None:
            self.client.set_tag(self.run_id, "raytrader.checkpoint", checkpoint)
        self.client.set_terminated(self.run_id, status=status)


@dataclass
class TrainResult:
    iterations: int
    resumed_from: int | None
    checkpoint: str | None
    history: list[dict[str, float]] = field(default_factory=list)
    mlflow_run: str | None = None
    #: the run's id in the experiment store (None: not recorded)
    store_run: int | None = None


def _latest_checkpoint(root: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint (its ``DONE`` marker is written after RLlib's save)."""
    best: tuple[Path, int] | None = None
    for d in root.glob("iter_*"):
        if (d / "DONE").is_file():
            n = int(d.name.split("_", 1)[1])
            if best is None or n > best[1]:
                best = (d, n)
    return best


def train_rl(
    config: RLConfig, *, on_iteration: Callable[[int, dict[str, float]], None] | None = None
) -> TrainResult:
    """Train (or resume) a run; see the module docstring."""
    from raytrader.strategies.runner import ensure_ray

    ensure_ray()
    out = Path(config.output_dir)
    ckpts = out / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    # a resumed run may train longer, checkpoint differently or use more runners; nothing else
    free = {
        "iterations",
        "checkpoint_every",
        "num_env_runners",
        "mlflow",
        "tracking_uri",
        "register_as",
        "record",
        "record_steps",
    }
    if saved.exists():
        # validated again, so a config saved before a field was added reads with its default
        before_cfg = RLConfig.parse(json.loads(saved.read_text()), where=str(saved))
        before = {k: v for k, v in before_cfg.model_dump(mode="json").items() if k not in free}
        now = {k: v for k, v in config.model_dump(mode="json").items() if k not in free}
        if before != now:
            changed = sorted(k for k in now if before.get(k) != now[k])
            raise ConfigError(
                f"{out} holds a run with another config ({', '.join(changed)} differ); "
                "use a new output_dir or delete it"
            )
    saved.write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    store, store_run, store_cfg = _store_run(config) if config.record else (None, None, None)
    algo = build_algo(config, store_cfg)
    resumed: int | None = None
    latest = _latest_checkpoint(ckpts)
    if latest is not None:
        algo.restore_from_path(str((latest[0] / "algo").resolve()))
        resumed = latest[1]
    result = TrainResult(iterations=int(algo.iteration), resumed_from=resumed, checkpoint=None)
    tracker = RunTracker(config) if config.mlflow else None
    result.mlflow_run = tracker.run_id if tracker is not None else None
    result.store_run = store_run
    status = "FAILED"
    try:
        while algo.iteration < config.iterations:
            row = train_step(algo)
            result.history.append(row)
            if tracker is not None:
                tracker.iteration(int(algo.iteration), row)
            if on_iteration is not None:
                on_iteration(int(algo.iteration), row)
            if algo.iteration % config.checkpoint_every == 0 or algo.iteration == config.iterations:
                result.checkpoint = str(_save(algo, ckpts))
        result.iterations = int(algo.iteration)
        if result.checkpoint is None and latest is not None:
            result.checkpoint = str(latest[0])
        status = "FINISHED"
        return result
    finally:
        algo.stop()
        if tracker is not None:
            tracker.finish(status, result.checkpoint)
        if store is not None and store_run is not None:
            last = result.history[-1] if result.history else {}
            store.finish_run(
                store_run,
                status="finished" if status == "FINISHED" else "failed",
                metrics={
                    "iterations": int(algo.iteration),
                    "episode_return_mean": last.get("episode_return_mean"),
                    "env_steps": last.get("env_steps"),
                },
                mlflow_run_id=result.mlflow_run,
            )
            store.close()


def run_key(config: RLConfig) -> str:
    """A run's key in the experiment store: its output directory (a resumed run is the same)."""
    return f"rl:{Path(config.output_dir).resolve()}"


def _store_run(config: RLConfig) -> tuple[Any, int | None, dict[str, Any] | None]:
    """(store, run id, the episode callback's settings) of this training run, started (or
    resumed) in the experiment store."""
    from raytrader.data.sources import load_bars
    from raytrader.db.store import ExperimentStore, RunSpec
    from raytrader.training.episodes import store_env_config

    store = ExperimentStore.configured()
    if store is None:
        return None, None, None
    bars = load_bars(config.data)
    spec = RunSpec.for_bars(
        bars,
        key=run_key(config),
        kind="rl",
        what=config.algo,
        config=config.model_dump(mode="json"),
        data=config.data,
        feature_service=feature_tags(config).get("raytrader.feature_service"),
        seed=config.seed,
    )
    url = store.engine.url.render_as_string(hide_password=False)
    callback = store_env_config(url, spec.key, bars.periods_per_year, config.record_steps)
    return store, store.start_run(spec), callback


def _save(algo: Any, root: Path) -> Path:
    target = root / f"iter_{int(algo.iteration):06d}"
    if target.exists():
        shutil.rmtree(target)
    algo.save_to_path(str((target / "algo").resolve()))
    (target / "DONE").write_text(str(algo.iteration))
    os.sync()
    return target


def policy_targets(
    env: EnvConfig,
    policy: Callable[[np.ndarray], Any],
    market: Market,
    normalizer: Any,
    seed: int = 0,
) -> tuple[Any, np.ndarray]:
    """(bars, targets) of the policy played greedily over ``market`` as one episode from its first
    usable bar, without scenarios or randomized costs; the last bar's target is NaN (nothing fills
    after it). ``normalizer`` is the training split's."""
    env_cfg = env.model_copy(
        update={
            "episode_length": market.n_usable - 1,
            "random_start": False,
            "scenarios": (),
            "scenario_probability": 0.0,
            "cost_randomization": None,
        }
    )
    trading = TradingEnv(market, env_cfg, normalizer=normalizer)
    obs, _ = trading.reset(seed=seed)
    targets = []
    done = False
    while not done:
        obs, _, term, trunc, info = trading.step(policy(obs))
        targets.append(info["target"])
        done = term or trunc
    mask = np.zeros(len(market.bars), dtype=bool)
    mask[market.first : market.first + len(targets) + 1] = True
    return market.bars.head_mask(mask), np.array([*targets, np.nan])


def evaluate(
    config: RLConfig,
    policy: Callable[[np.ndarray], Any],
    market: Market | None = None,
    *,
    mlflow_run: str | None = None,
) -> dict[str, dict[str, float]]:
    """Backtest metrics on the held-out split: the policy, buy-and-hold and ma_cross(10, 50).

    With ``mlflow_run``, the policy's metrics (``eval.*``), the comparison table and the policy's
    backtest report (equity/drawdown and returns plots, trades CSV) go to that run."""
    from raytrader.backtest.engine import run_targets
    from raytrader.strategies.base import make_strategy

    train, test = load_market(config)
    test = market or test
    normalizer = TradingEnv(train, config.env).normalizer
    bars, targets = policy_targets(config.env, policy, test, normalizer, config.seed)
    mask = test.bars.index.isin(bars.index)
    sim = config.env.sim
    # ma_cross on the whole series, then the window: its averages are warm from the first bar
    cross = make_strategy("ma_cross", {"fast": 10, "slow": 50}).target_positions(test.bars.frame)
    rows = {
        "policy": targets,
        "buy_and_hold": np.ones(len(bars)),
        "ma_cross": cross.to_numpy(dtype=np.float64)[mask],
    }
    out: dict[str, dict[str, float]] = {}
    for name, tg in rows.items():
        _, metrics = run_targets(bars, np.asarray(tg, dtype=np.float64), sim)
        out[name] = {k: float(v[0]) for k, v in metrics.items()}
    if mlflow_run is not None:
        _log_evaluation(config, mlflow_run, bars, rows["policy"], out)
    if config.record:
        _record_evaluation(config, bars, np.asarray(rows["policy"], dtype=np.float64))
    return out


def _record_evaluation(config: RLConfig, bars: Any, targets: np.ndarray) -> None:
    """The held-out backtest of the policy, as a backtest of its training run in the store
    (when that run was recorded)."""
    from sqlalchemy import select

    from raytrader.backtest.record import targets_record
    from raytrader.db.models import Run
    from raytrader.db.store import ExperimentStore

    store = ExperimentStore.configured()
    if store is None:
        return
    try:
        with store.session() as s:
            if s.scalar(select(Run.id).where(Run.key == run_key(config))) is None:
                return
        record = targets_record(
            bars, targets, config.env.sim, strategy=f"rl:{config.algo}",
            params={"split": "held-out", "seed": config.seed}, data=config.data,
            run_key=run_key(config),
        )  # fmt: skip
        store.record_backtest(record)
    finally:
        store.close()


def register_policy(config: RLConfig, result: TrainResult) -> str:
    """Log the run's final policy as an :class:`~raytrader.registry.RLPolicyModel` pyfunc into
    its MLflow run and register it as ``config.register_as``; returns the version. A policy on
    another feature set than the served one is registered with that set's columns as its input
    example and ``raytrader.feature_service`` ``none``: the decision service refuses it."""

    from raytrader.data.sources import load_bars
    from raytrader.registry import (
        RLPolicyModel,
        data_range,
        register_model,
        rl_artifacts,
        serving_example,
    )

    if config.register_as is None or result.checkpoint is None or result.mlflow_run is None:
        raise ConfigError("nothing to register: set register_as and train with mlflow on")
    bars = load_bars(config.data)
    train, _ = load_market(config)
    normalizer = TradingEnv(train, config.env).normalizer
    from raytrader.features import get_feature_set

    # the rows it reads: its own feature set's (the served one's for bar_features_v1)
    example = serving_example(bars, feature_set=get_feature_set(config.env.feature_set))
    return register_model(
        RLPolicyModel(),
        name=config.register_as,
        kind="rl",
        input_example=example,
        # the env config in the artifacts names the feature set and subset; the tags say it too
        artifacts=rl_artifacts(result.checkpoint, normalizer, config.env),
        tags={
            "raytrader.data": data_range(config.data, train.bars.head(train.hi)),
            **feature_tags(config),
        },
        tracking_uri=config.tracking_uri,
        root=config.output_dir,
        run_id=result.mlflow_run,
    )


def _log_evaluation(
    config: RLConfig,
    run_id: str,
    bars: Any,
    targets: np.ndarray,
    table: dict[str, dict[str, float]],
) -> None:
    import tempfile

    import pandas as pd

    from raytrader.backtest.engine import run_backtest
    from raytrader.backtest.report import write_report

    client = wiring.mlflow_client(config.tracking_uri, Path(config.output_dir))
    for key, value in table["policy"].items():
        if np.isfinite(value):
            client.log_metric(run_id, f"eval.{key}", value)
    client.log_dict(run_id, table, "evaluation/comparison.json")
    result = run_backtest(bars, pd.Series(targets, index=bars.index), config.env.sim, name="policy")
    with tempfile.TemporaryDirectory() as tmp:
        write_report(result, tmp)
        client.log_artifacts(run_id, tmp, "evaluation/report")


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrader.training.rl --config run.yaml [--evaluate]``: train (resuming from
    the run's newest checkpoint), one JSON line per iteration, then a summary line."""
    from raytrader.config import pipeline_main

    def run(config: RLConfig, args: Any) -> Iterator[dict[str, Any]]:
        # iteration lines go out as they happen (a long run shows progress; a killed one its last)
        result = train_rl(config, on_iteration=lambda i, row: print(json.dumps(row), flush=True))
        summary: dict[str, Any] = {
            "iterations": result.iterations,
            "resumed_from": result.resumed_from,
            "checkpoint": result.checkpoint,
        }
        if args.evaluate and result.checkpoint is not None:
            summary["evaluation"] = evaluate(
                config, greedy_policy(result.checkpoint), mlflow_run=result.mlflow_run
            )
        if config.register_as is not None:
            summary["registered_version"] = register_policy(config, result)
        yield summary

    flags = [("evaluate", "evaluate on the held-out split")]
    return pipeline_main("python -m raytrader.training.rl", RLConfig, run, argv, flags)


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: Ray pickles functions by reference
    # to their module, and by value (pydantic classes included, which fails) when in __main__
    from raytrader.training.rl import main as _main

    raise SystemExit(_main())
