"""TWC rollout throughput (environment steps/s): batched circuit + batched physics vs the
upstream way (stateful circuit policy stepping a Gymnasium env, one episode at a time).

Candidates (group "twc rollout"):

- ``batched``: ``TWC.step`` on B = 256 episodes at once + ``BatchedMountainCar`` (numpy),
  ``STEPS`` steps per call, so B·STEPS environment steps per call.
- ``gymnasium_loop``: ``TWC.policy`` (B = 1) + ``gymnasium.make("MountainCarContinuous-v0")``,
  ``STEPS`` steps per call.

Both use the solved example policy and episode seeds 42.. . Before timing, the batched run's
first rows are checked against the Gymnasium loop: identical observations step for step.
``extra_info["env_steps"]`` is the number of environment steps per call; the throughput ratio is
(env_steps / mean time) of batched over gymnasium_loop (recorded in docs/twc.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rnnlab.twc.circuit import TWC
from rnnlab.twc.mountain_car import BatchedMountainCar

BATCH = 256
STEPS = 100
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "twc" / "es_seed0_final.json"


def _policy() -> TWC:
    meta = json.loads(EXAMPLE.read_text())
    return TWC.from_parameters(meta["parameters"])


def _batched(circuit: TWC, batch: int) -> np.ndarray:
    env = BatchedMountainCar(batch)
    obs = env.reset(np.arange(42, 42 + batch))
    state = None
    observations = [obs]
    with torch.no_grad():
        for _ in range(STEPS):
            action, state = circuit.step(torch.from_numpy(obs), state)
            obs, *_ = env.step(action[:, 0].numpy())
            observations.append(obs)
    return np.stack(observations, axis=1)


def _gymnasium_loop(circuit: TWC, seed: int = 42) -> np.ndarray:
    env = gym.make("MountainCarContinuous-v0")
    obs, _ = env.reset(seed=seed)
    circuit.reset_policy()
    observations = [obs]
    for _ in range(STEPS):
        action = circuit.policy(torch.from_numpy(obs)[None])[0].numpy()
        obs, _, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        if terminated or truncated:
            break
    env.close()
    return np.stack(observations)


@pytest.mark.parametrize("candidate", ["batched", "gymnasium_loop"])
def test_twc_rollout(benchmark: Any, measure: Any, candidate: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        circuit = _policy()
        benchmark.group = "twc rollout"
        if candidate == "batched":
            result = measure(lambda: _batched(circuit, BATCH), budget_s=4.0, max_rounds=20)
            for row in range(3):
                reference = _gymnasium_loop(circuit, 42 + row)
                np.testing.assert_array_equal(result[row, : reference.shape[0]], reference)
            env_steps, batch = BATCH * STEPS, BATCH
        else:
            result = measure(lambda: _gymnasium_loop(circuit), budget_s=4.0, max_rounds=20)
            assert result.shape == (STEPS + 1, 2)
            env_steps, batch = STEPS, 1
        benchmark.extra_info.update(
            {
                "kind": "rollout",
                "candidate": candidate,
                "n": 11,
                "batch": batch,
                "env_steps": env_steps,
            }
        )
    finally:
        torch.set_num_threads(threads)
