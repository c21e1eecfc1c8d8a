"""Batched episodes of a circuit on MountainCarContinuous, and the evaluation protocol.

:func:`run_episodes` advances B episodes together (batched circuit + batched physics), dropping
finished rows as it goes. :func:`evaluate` is the fixed-seed protocol (deterministic policy,
episode seeds ``first_seed + i``, mean ± std return, success rate, mean steps), on either the
batched physics (equal to Gymnasium step for step) or Gymnasium itself, one episode at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnnlab.errors import ConfigError
from rnnlab.twc.circuit import CircuitState, EffectiveParameters, FiuriCircuit
from rnnlab.twc.mountain_car import MAX_EPISODE_STEPS, BatchedMountainCar

__all__ = [
    "EVAL_FIRST_SEED",
    "SELECTION_FIRST_SEED",
    "EpisodeBatch",
    "evaluate",
    "run_episodes",
    "run_gymnasium_episode",
]

EVAL_FIRST_SEED = 42  # reported evaluation: seeds 42.. (the upstream protocol)
SELECTION_FIRST_SEED = 10_000  # checkpoint selection during training: disjoint seeds
BACKENDS = ("batched", "gymnasium")


@dataclass
class EpisodeBatch:
    """Per-episode results: return, steps, whether the goal was reached."""

    returns: np.ndarray
    steps: np.ndarray
    success: np.ndarray
    max_position: np.ndarray | None = None

    def summary(self) -> dict[str, float]:
        return {
            "episodes": int(self.returns.shape[0]),
            "mean_return": float(self.returns.mean()),
            "std_return": float(self.returns.std()),
            "min_return": float(self.returns.min()),
            "success_rate": float(self.success.mean()),
            "mean_steps": float(self.steps.mean()),
        }


def _take_params(params: EffectiveParameters | None, rows: torch.Tensor) -> Any:
    if params is None:
        return None
    return EffectiveParameters(*(p[rows] if p.ndim == 2 else p for p in params))


@torch.no_grad()
def run_episodes(
    circuit: FiuriCircuit,
    seeds: np.ndarray | list[int],
    params: EffectiveParameters | None = None,
    max_steps: int = MAX_EPISODE_STEPS,
) -> EpisodeBatch:
    """Run one episode per seed in parallel with the deterministic circuit policy.

    ``params`` may hold per-episode parameters ([B, ...] tensors) for population rollouts.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    n = seeds.shape[0]
    env = BatchedMountainCar(n, max_episode_steps=max_steps)
    obs = env.reset(seeds)
    returns = np.zeros(n)
    steps = np.zeros(n, dtype=np.int64)
    success = np.zeros(n, dtype=bool)
    max_position = obs[:, 0].astype(np.float64)
    alive = np.arange(n)
    state: CircuitState | None = None
    row_params = params
    while alive.size:
        action, state = circuit.step(torch.from_numpy(obs), state, row_params)
        obs, reward, terminated, truncated = env.step(action[:, 0].numpy())
        returns[alive] += reward
        steps[alive] += 1
        success[alive] |= terminated
        max_position[alive] = np.maximum(max_position[alive], obs[:, 0])
        finished = terminated | truncated
        if finished.any():
            keep = ~finished
            keep_t = torch.from_numpy(keep)
            alive = alive[keep]
            obs = obs[keep]
            env.keep_rows(keep)
            state = CircuitState(state.internal[keep_t], state.output[keep_t])
            row_params = _take_params(row_params, keep_t)
    return EpisodeBatch(returns, steps, success, max_position)


@torch.no_grad()
def run_gymnasium_episode(
    circuit: FiuriCircuit, seed: int, record: bool = False
) -> tuple[float, int, bool, dict[str, np.ndarray]]:
    """One Gymnasium episode with the stateful policy (the upstream way)."""
    import gymnasium as gym

    env = gym.make("MountainCarContinuous-v0")
    obs, _ = env.reset(seed=seed)
    circuit.reset_policy()
    total, steps, reached = 0.0, 0, False
    trace: dict[str, list[np.ndarray]] = {"obs": [], "action": [], "internal": [], "output": []}
    while True:
        action = circuit.policy(torch.from_numpy(obs)[None])[0].numpy().astype(np.float32)
        if record:
            state = circuit.policy_state
            assert state is not None
            trace["obs"].append(obs)
            trace["action"].append(action)
            trace["internal"].append(state.internal[0].numpy().copy())
            trace["output"].append(state.output[0].numpy().copy())
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        steps += 1
        if terminated or truncated:
            reached = bool(terminated)
            break
    env.close()
    return total, steps, reached, {k: np.asarray(v) for k, v in trace.items()}


def evaluate(
    circuit: FiuriCircuit,
    episodes: int = 100,
    first_seed: int = EVAL_FIRST_SEED,
    backend: str = "batched",
) -> EpisodeBatch:
    """Fixed-seed evaluation: episode i uses seed ``first_seed + i``, no exploration noise."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not one of {BACKENDS}")
    if episodes < 1:
        raise ConfigError(f"episodes: need at least 1, got {episodes}")
    seeds = np.arange(first_seed, first_seed + episodes)
    if backend == "batched":
        return run_episodes(circuit, seeds)
    results = [run_gymnasium_episode(circuit, int(s)) for s in seeds]
    return EpisodeBatch(
        np.array([r[0] for r in results]),
        np.array([r[1] for r in results]),
        np.array([r[2] for r in results]),
    )
