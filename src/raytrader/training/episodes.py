"""RL episodes into the experiment store: an RLlib callback that writes every finished training
episode, its sampled steps and the kernel's trades (:mod:`raytrader.db`).

The callback runs where the episode was sampled (the driver with ``num_env_runners: 0``, else each
env runner's process) and finds the store, the run and the sampling in the algorithm's
``env_config["raytrader_store"]`` (:func:`store_env_config`), so it works on any Ray worker that
can reach the database. An episode sampled in chunks across iterations is written once, whole, at
its end; its key is RLlib's episode id, so a resumed run never writes one twice.

Per episode: length, reward sum, total return and max drawdown of the account's equity, Sharpe
(the kernel's pinned definition, annualized by the bars' periods per year), the number of round
trips; per sampled step: time, action, target, position (units), reward, equity, the bar's close
and a digest of the observation (:func:`features_digest`); the trades are the simulator's own
records (an open position is closed at the last close, reason ``open``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import pandas as pd

from raytrader.backtest.metrics import compute_metrics
from raytrader.db.store import EpisodeRecord, ExperimentStore, StepSampling
from raytrader.sim import trades_frame

log = logging.getLogger(__name__)
STORE_KEY = "raytrader_store"
_STORES: dict[str, tuple[ExperimentStore, dict[str, int]]] = {}


def store_env_config(
    url: str, run_key: str, periods_per_year: float, sampling: StepSampling
) -> dict[str, Any]:
    """What the callback reads from ``env_config[STORE_KEY]``."""
    return {
        "url": url,
        "run_key": run_key,
        "periods_per_year": float(periods_per_year),
        "sampling": sampling.model_dump(),
    }


def _chunks(episode: Any, previous: list[Any] | None) -> list[Any]:
    return [*(previous or []), episode]


def episode_record(chunks: list[Any], periods_per_year: float) -> EpisodeRecord:
    """The record of an episode from its chunks' infos (one per bar, deduplicated by bar: a
    continued chunk repeats its predecessor's last info) and rewards."""
    infos: dict[int, dict[str, Any]] = {}
    digests: dict[int, str] = {}
    rewards: list[float] = []
    actions: list[Any] = []
    for chunk in chunks:
        observations = chunk.get_observations()
        for i, info in enumerate(chunk.get_infos()):
            if isinstance(info, dict) and "bar" in info:
                infos.setdefault(int(info["bar"]), info)
                if i < len(observations):
                    digests.setdefault(int(info["bar"]), features_digest(observations[i]))
        rewards.extend(float(r) for r in chunk.get_rewards())
        actions.extend(chunk.get_actions())
    ordered = [infos[b] for b in sorted(infos)]
    equity = np.array([i["equity"] for i in ordered], dtype=np.float64)
    index = pd.DatetimeIndex([pd.Timestamp(i["timestamp"]) for i in ordered])
    n = len(ordered)
    # step t (t >= 1) is the bar the action of step t-1 led to; step 0 is the reset
    action = [np.nan, *(_scalar(a) for a in actions)][:n]
    reward = [np.nan, *rewards][:n]
    steps = pd.DataFrame(
        {
            "t": np.arange(n),
            "time": index,
            "action": action + [np.nan] * (n - len(action)),
            "target": [float(i["target"]) for i in ordered],
            "position": [float(i["units"]) for i in ordered],
            "reward": reward + [np.nan] * (n - len(reward)),
            "equity": equity,
            "price": [float(i.get("close", np.nan)) for i in ordered],
            "features_digest": [digests.get(b) for b in sorted(infos)],
        }
    )
    raw = ordered[-1].get("trades") if ordered else None
    trades = (
        trades_frame(np.asarray(raw), index).drop(columns="column")
        if raw is not None and len(raw)
        else None
    )
    metrics = (
        compute_metrics(equity.reshape(1, -1), float(equity[0]), periods_per_year, rows=True)
        if n >= 2
        else {}
    )
    first = chunks[0]
    return EpisodeRecord(
        key=str(first.id_),
        length=max(0, n - 1),
        reward_sum=float(np.sum(rewards)),
        total_return=float(equity[-1] / equity[0] - 1.0) if n else None,
        sharpe=float(metrics["sharpe"][0]) if metrics else None,
        max_drawdown=float(metrics["max_drawdown"][0]) if metrics else None,
        trades=0 if trades is None else len(trades),
        start_time=index[0].to_pydatetime() if n else None,
        end_time=index[-1].to_pydatetime() if n else None,
        steps=steps,
        trade_rows=trades,
    )


def features_digest(observation: Any) -> str:
    """What the agent saw at a step, as 16 hex digits of SHA-256 over the observation's float32
    bytes: two steps (or a training step and a served decision) saw the same features exactly when
    their digests match."""
    data = np.ascontiguousarray(np.asarray(observation, dtype=np.float32))
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


def _scalar(action: Any) -> float:
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    return float(a[0]) if a.size else float("nan")


def _store(url: str, run_key: str) -> tuple[ExperimentStore, int]:
    if url not in _STORES:
        _STORES[url] = (ExperimentStore.open(url), {})
    store, runs = _STORES[url]
    if run_key not in runs:
        from sqlalchemy import select

        from raytrader.db.models import Run

        with store.session() as s:
            found = s.scalar(select(Run.id).where(Run.key == run_key))
        if found is None:
            raise LookupError(f"no run {run_key!r} in the experiment store")
        runs[run_key] = int(found)
    return store, runs[run_key]


def _callback_class() -> Any:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class EpisodeRecorder(RLlibCallback):
        """Writes each finished episode to the experiment store (module docstring)."""

        def on_episode_end(
            self,
            *,
            episode: Any,
            prev_episode_chunks: list[Any] | None = None,
            env_runner: Any = None,
            **kwargs: Any,
        ) -> None:
            cfg = (getattr(getattr(env_runner, "config", None), "env_config", None) or {}).get(
                STORE_KEY
            )
            if not cfg:
                return
            store, run_id = _store(cfg["url"], cfg["run_key"])
            record = episode_record(_chunks(episode, prev_episode_chunks), cfg["periods_per_year"])
            store.record_episode(run_id, record, StepSampling(**cfg["sampling"]))

    return EpisodeRecorder


def recorder() -> Any:
    """The RLlib callback class (built on first use: RLlib is imported only by RL training)."""
    return _callback_class()
