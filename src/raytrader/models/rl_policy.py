"""A trained RLlib policy as a function: where a checkpoint keeps it, and its actions with their
confidence. The registry's RL pyfunc (:class:`raytrader.registry.RLPolicyModel`), the trainer and
the evaluator all read policies through these helpers, so they live below all three.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def policy_dir(checkpoint: str | Path) -> Path:
    """The RLModule inside a checkpoint saved by :func:`~raytrader.training.rl.train_rl`."""
    return Path(checkpoint) / "algo" / "learner_group" / "learner" / "rl_module" / "default_policy"


def policy_outputs(module: Any, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(actions, confidence) for a batch of observations: the most likely discrete action and its
    probability, or for a continuous policy the Gaussian's mean (clipped to [-1, 1]) and 1; a DQN
    module's greedy action and 1 (Q-values are not probabilities)."""
    import gymnasium as gym
    import torch

    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
    if "action_dist_inputs" not in out:  # DQN acts greedily on Q-values: no probabilities
        return out["actions"].numpy(), np.ones(len(obs))
    logits = out["action_dist_inputs"].numpy()
    if isinstance(module.action_space, gym.spaces.Box):
        return np.clip(logits[:, :1], -1.0, 1.0), np.ones(len(logits))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1), probs.max(axis=1)


def greedy_policy(checkpoint: str | Path) -> Callable[[np.ndarray], Any]:
    """obs -> the policy's most likely action, from a checkpoint saved by
    :func:`~raytrader.training.rl.train_rl`."""
    from ray.rllib.core.rl_module import RLModule

    return module_policy(RLModule.from_checkpoint(str(policy_dir(checkpoint).resolve())))


def module_policy(module: Any) -> Callable[[np.ndarray], Any]:
    """obs -> the most likely action of an RLModule (a checkpoint's or a live algorithm's)."""

    def act(obs: np.ndarray) -> Any:
        actions, _ = policy_outputs(module, obs[None])
        return actions[0] if actions.ndim > 1 else int(actions[0])

    return act


__all__ = ["greedy_policy", "module_policy", "policy_dir", "policy_outputs"]
