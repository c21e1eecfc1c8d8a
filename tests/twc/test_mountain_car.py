"""Batched MountainCarContinuous physics equals Gymnasium's env step for step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rnnlab.twc.mountain_car import BatchedMountainCar


def test_batched_physics_equals_gymnasium_over_random_actions() -> None:
    n = 10
    env = BatchedMountainCar(n)
    seeds = np.arange(500, 500 + n)
    obs = env.reset(seeds)
    envs = [gym.make("MountainCarContinuous-v0") for _ in range(n)]
    gym_obs = np.stack([e.reset(seed=int(s))[0] for e, s in zip(envs, seeds, strict=False)])
    np.testing.assert_array_equal(obs, gym_obs)
    rng = np.random.default_rng(0)
    done = np.zeros(n, dtype=bool)
    outcomes = {"terminated": 0, "truncated": 0}
    steps = 0
    while not done.all():
        # energy pumping with noise (reaches the goal), some rows fully random incl. |a| > 1
        push = np.sign(obs[:, 1] + 1e-9) * rng.uniform(0.2, 1.6, n) * np.arange(n) / (n - 1)
        action = (push + rng.normal(0.0, 0.3, n)).astype(np.float32)
        action[:2] = rng.uniform(-1.5, 1.5, 2).astype(np.float32)
        obs, reward, terminated, truncated = env.step(action)
        for i in np.flatnonzero(~done):
            g_obs, g_reward, g_term, g_trunc, _ = envs[i].step(action[i : i + 1])
            assert np.array_equal(g_obs, obs[i]), (i, steps)
            assert g_reward == reward[i]
            assert (g_term, g_trunc) == (terminated[i], truncated[i])
            if g_term or g_trunc:
                done[i] = True
                outcomes["terminated" if g_term else "truncated"] += 1
        steps += 1
    assert steps == 999
    assert outcomes["terminated"] > 0
    assert outcomes["truncated"] > 0
