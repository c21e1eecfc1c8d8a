"""Batched MountainCarContinuous-v0 physics in numpy, step-for-step equal to Gymnasium's.

Gymnasium's env (1.x) mixes precisions: after ``reset`` the internal state is float64 (only the
returned observation is float32); after each step it is stored as float32, and arithmetic
between a float32 state/action and Python floats happens in float32 (NumPy 2 promotion). An
out-of-range action is clipped to a Python float, so that step's force term is float64. This
class reproduces each of these roundings, so batched episodes equal Gymnasium's for float32
actions (tested over random action sequences, terminations and the 999-step truncation).

Reset draws x0 ~ U(−0.6, −0.4) with ``numpy.random.default_rng(seed)`` per episode, which is the
generator Gymnasium's ``reset(seed=seed)`` creates, so episode ``seed`` starts where Gymnasium's
does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnlab.errors import ConfigError, ShapeError

__all__ = ["MAX_EPISODE_STEPS", "BatchedMountainCar"]

MAX_EPISODE_STEPS = 999
_MIN_POSITION = -1.2
_MAX_POSITION = 0.6
_MAX_SPEED = 0.07
_GOAL_POSITION = 0.45
_POWER = 0.0015


def _f32(x: np.ndarray | np.floating) -> np.ndarray:
    return np.asarray(x).astype(np.float32).astype(np.float64)


class BatchedMountainCar:
    """``n`` independent MountainCarContinuous-v0 episodes advanced together."""

    def __init__(self, n: int, max_episode_steps: int = MAX_EPISODE_STEPS) -> None:
        if n < 1:
            raise ConfigError(f"n: need at least one environment, got {n}")
        self.n = n
        self.max_episode_steps = max_episode_steps
        self.position = np.zeros(n)
        self.velocity = np.zeros(n)
        self.fresh = np.ones(n, dtype=bool)  # state still float64 (just reset)
        self.elapsed = np.zeros(n, dtype=np.int64)

    def reset(
        self, seeds: Sequence[int] | np.ndarray, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Reset ``rows`` (default all) with one seed each; returns all observations (float32)."""
        index = np.arange(self.n) if rows is None else np.flatnonzero(rows)
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if seeds.shape[0] != index.shape[0]:
            raise ShapeError(f"seeds: expected {index.shape[0]} seeds, got {seeds.shape[0]}")
        for row, seed in zip(index, seeds, strict=False):
            self.position[row] = np.random.default_rng(int(seed)).uniform(-0.6, -0.4)
        self.velocity[index] = 0.0
        self.fresh[index] = True
        self.elapsed[index] = 0
        return self.observation()

    def set_state(self, position: np.ndarray, velocity: np.ndarray, fresh: bool = False) -> None:
        self.position = np.asarray(position, dtype=np.float64).copy()
        self.velocity = np.asarray(velocity, dtype=np.float64).copy()
        self.fresh[:] = fresh
        self.elapsed[:] = 0

    def keep_rows(self, keep: np.ndarray) -> None:
        """Drop the rows where ``keep`` is False (finished episodes)."""
        self.position, self.velocity = self.position[keep], self.velocity[keep]
        self.fresh, self.elapsed = self.fresh[keep], self.elapsed[keep]
        self.n = int(self.position.shape[0])

    def observation(self) -> np.ndarray:
        return np.stack([self.position, self.velocity], axis=1).astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance every row by ``action [n]`` or ``[n, 1]`` (float32).

        Returns (observation [n, 2] float32, reward [n] float64, terminated [n], truncated [n]).
        """
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape[0] != self.n:
            raise ShapeError(f"action: expected {self.n} actions, got {action.shape[0]}")
        a = action.astype(np.float64)
        fresh = self.fresh
        pos, vel = self.position, self.velocity
        three_pos = np.where(fresh, 3.0 * pos, _f32(3.0 * pos))
        gravity = 0.0025 * np.cos(three_pos)
        clipped = (a < -1.0) | (a > 1.0)
        in_range = _f32(_f32(a * _f32(np.float64(_POWER))) - _f32(gravity))
        out_of_range = np.clip(a, -1.0, 1.0) * _POWER - gravity
        increment = np.where(clipped, out_of_range, in_range)
        vel = np.where(fresh, vel + increment, _f32(vel + _f32(increment)))
        speed_limit = np.where(fresh, _MAX_SPEED, _f32(np.float64(_MAX_SPEED)))
        vel = np.where(vel > speed_limit, _MAX_SPEED, vel)
        vel = np.where(vel < -speed_limit, -_MAX_SPEED, vel)
        pos = np.where(fresh, pos + vel, _f32(pos + _f32(vel)))
        high = np.where(fresh, _MAX_POSITION, _f32(np.float64(_MAX_POSITION)))
        low = np.where(fresh, _MIN_POSITION, _f32(np.float64(_MIN_POSITION)))
        pos = np.where(pos > high, _MAX_POSITION, pos)
        below = pos < low
        pos = np.where(below, _MIN_POSITION, pos)
        at_wall = below | (pos == low)
        vel = np.where(at_wall & (vel < 0), 0.0, vel)
        goal = np.where(fresh, _GOAL_POSITION, _f32(np.float64(_GOAL_POSITION)))
        terminated = (pos >= goal) & (vel >= 0)
        reward = np.where(terminated, 100.0, 0.0) - a * a * 0.1
        self.position = _f32(pos)
        self.velocity = _f32(vel)
        self.fresh = np.zeros(self.n, dtype=bool)
        self.elapsed = self.elapsed + 1
        truncated = self.elapsed >= self.max_episode_steps
        return self.observation(), reward, terminated, truncated
