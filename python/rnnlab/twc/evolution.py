"""CMA-ES over the circuit's 40 raw parameters, with batched population rollouts.

Each generation samples ``population`` raw parameter vectors [T, raw d, raw w], runs
``episodes_per_candidate`` MountainCar episodes per candidate in one batch (per-row parameters,
common random start states across candidates), and updates the search distribution with the
standard CMA-ES rules (Hansen, "The CMA Evolution Strategy: A Tutorial", 2016). Every
``eval_every`` generations the distribution mean and the generation's best candidate are scored
over ``eval_episodes`` selection seeds (10000.., disjoint from the reported evaluation seeds
42..); the best-scoring vector is kept, so the reported score of "best" is not selection-biased.

Two additions made CMA-ES reliable here (without them every run collapsed onto the do-nothing
plateau, return ≈ 0): the start mean is the best of ``random_search`` candidates drawn from the
original FIURI search ranges (T in [0, 1], d in [0, 0.5], w in [0, 1]), and failed episodes earn
a shaping bonus of up to ``progress_bonus`` for the highest position reached.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from rnnlab.errors import ConfigError
from rnnlab.twc.circuit import TWC
from rnnlab.twc.rollout import SELECTION_FIRST_SEED, evaluate, run_episodes

__all__ = ["CMAES", "EvolutionConfig", "EvolutionResult", "train_evolution"]


class CMAES:
    """Minimal CMA-ES (maximisation) with full covariance."""

    def __init__(self, mean: np.ndarray, sigma: float, population: int, seed: int) -> None:
        if sigma <= 0:
            raise ConfigError(f"sigma: must be > 0, got {sigma}")
        if population < 4:
            raise ConfigError(f"population: need at least 4, got {population}")
        self.rng = np.random.default_rng(seed)
        n = mean.shape[0]
        self.n = n
        self.mean = mean.astype(np.float64).copy()
        self.sigma = float(sigma)
        self.population = population
        self.mu = population // 2
        raw = np.log(self.mu + 0.5) - np.log(np.arange(1, self.mu + 1))
        self.weights = raw / raw.sum()
        self.mueff = 1.0 / float((self.weights**2).sum())
        self.cc = (4 + self.mueff / n) / (n + 4 + 2 * self.mueff / n)
        self.cs = (self.mueff + 2) / (n + self.mueff + 5)
        self.c1 = 2 / ((n + 1.3) ** 2 + self.mueff)
        self.cmu = min(
            1 - self.c1, 2 * (self.mueff - 2 + 1 / self.mueff) / ((n + 2) ** 2 + self.mueff)
        )
        self.damps = 1 + 2 * max(0.0, math.sqrt((self.mueff - 1) / (n + 1)) - 1) + self.cs
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.path_c = np.zeros(n)
        self.path_s = np.zeros(n)
        self.cov = np.eye(n)
        self.generation = 0
        self._basis = np.eye(n)
        self._scales = np.ones(n)
        self._steps = np.zeros((population, n))

    def ask(self) -> np.ndarray:
        values, vectors = np.linalg.eigh(self.cov)
        self._scales = np.sqrt(np.maximum(values, 1e-20))
        self._basis = vectors
        z = self.rng.standard_normal((self.population, self.n))
        self._steps = (z * self._scales) @ self._basis.T
        return self.mean + self.sigma * self._steps

    def tell(self, fitness: np.ndarray) -> None:
        order = np.argsort(-fitness)[: self.mu]
        selected = self._steps[order]
        step = self.weights @ selected
        self.mean = self.mean + self.sigma * step
        inv_sqrt = (self._basis / self._scales) @ self._basis.T
        cs, cc, n = self.cs, self.cc, self.n
        self.path_s = (1 - cs) * self.path_s + math.sqrt(cs * (2 - cs) * self.mueff) * (
            inv_sqrt @ step
        )
        norm_s = float(np.linalg.norm(self.path_s))
        decay = 1 - (1 - cs) ** (2 * (self.generation + 1))
        hsig = norm_s / math.sqrt(decay) / self.chi_n < 1.4 + 2 / (n + 1)
        self.path_c = (1 - cc) * self.path_c + hsig * math.sqrt(cc * (2 - cc) * self.mueff) * step
        rank_mu = (selected * self.weights[:, None]).T @ selected
        self.cov = (
            (1 - self.c1 - self.cmu) * self.cov
            + self.c1 * (np.outer(self.path_c, self.path_c) + (1 - hsig) * cc * (2 - cc) * self.cov)
            + self.cmu * rank_mu
        )
        self.cov = (self.cov + self.cov.T) / 2
        self.sigma *= math.exp((self.cs / self.damps) * (norm_s / self.chi_n - 1))
        self.generation += 1


@dataclass
class EvolutionConfig:
    """Settings of :func:`train_evolution`."""

    generations: int = 300
    population: int = 16
    episodes_per_candidate: int = 8
    sigma: float = 0.3
    seed: int = 0
    dynamics: str = "exact"
    delay: int = 1
    encoder: str = "faithful"
    eval_every: int = 5
    eval_episodes: int = 100
    target_return: float = 90.0
    stop_at_target: bool = True
    time_limit_s: float = float("inf")
    progress_bonus: float = 50.0
    random_search: int = 2048  # candidates drawn from the FIURI ranges to pick the start mean


@dataclass
class EvolutionResult:
    best: TWC
    final: TWC
    best_eval: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds_to_target: float | None = None
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        return {
            "best_eval": self.best_eval,
            "seconds_to_target": self.seconds_to_target,
            "seconds": self.seconds,
            "generations": len(self.history),
        }


def train_evolution(
    config: EvolutionConfig,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> EvolutionResult:
    """Run CMA-ES; returns the best-evaluated circuit and the final mean circuit."""
    if config.eval_every < 1:
        raise ConfigError(f"eval_every: must be >= 1, got {config.eval_every}")
    circuit = TWC(
        dynamics=config.dynamics, delay=config.delay, encoder=config.encoder, seed=config.seed
    )
    started = time.perf_counter()  # the random-search start counts towards the wall time
    rng = np.random.default_rng(config.seed + 1)
    k = config.episodes_per_candidate
    start = circuit.flat_raw().double().numpy()
    if config.random_search > 0:
        start = _random_search_start(circuit, config, rng)
    strategy = CMAES(start, config.sigma, config.population, config.seed)
    best_vector = strategy.mean.copy()
    best_eval: dict[str, float] = {"mean_return": -math.inf}
    history: list[dict[str, float]] = []
    seconds_to_target: float | None = None
    scratch = TWC.from_config(circuit.config())
    for generation in range(config.generations):
        candidates = strategy.ask()
        # evaluation seeds stay disjoint from the fixed evaluation seeds (42 + i, i < 100k)
        seeds = rng.integers(1_000_000, 2**31 - 1, size=k)
        flat = torch.from_numpy(np.repeat(candidates, k, axis=0)).to(torch.float32)
        params = circuit.effective_from_flat_raw(flat)
        batch = run_episodes(circuit, np.tile(seeds, config.population), params)
        fitness = _shaped_fitness(batch, config.progress_bonus, config.population)
        strategy.tell(fitness)
        record: dict[str, float] = {
            "generation": generation,
            "seconds": time.perf_counter() - started,
            "fitness_best": float(fitness.max()),
            "fitness_mean": float(fitness.mean()),
            "sigma": strategy.sigma,
            "env_steps": int(batch.steps.sum()),
        }
        if (generation + 1) % config.eval_every == 0 or generation == config.generations - 1:
            for name, vector in (
                ("mean", strategy.mean),
                ("best_candidate", candidates[int(np.argmax(fitness))]),
            ):
                scratch.load_flat_raw(torch.from_numpy(vector))
                summary = evaluate(scratch, config.eval_episodes, SELECTION_FIRST_SEED).summary()
                record[f"eval_{name}"] = summary["mean_return"]
                if summary["mean_return"] > best_eval["mean_return"]:
                    best_eval = summary
                    best_vector = vector.copy()
            if best_eval["mean_return"] >= config.target_return and seconds_to_target is None:
                seconds_to_target = time.perf_counter() - started
            record["best_eval"] = best_eval["mean_return"]
        history.append(record)
        if progress is not None:
            progress(record)
        stop_target = seconds_to_target is not None and config.stop_at_target
        if stop_target or time.perf_counter() - started > config.time_limit_s:
            break
    best = TWC.from_config(circuit.config())
    best.load_flat_raw(torch.from_numpy(best_vector))
    final = TWC.from_config(circuit.config())
    final.load_flat_raw(torch.from_numpy(strategy.mean))
    return EvolutionResult(
        best=best,
        final=final,
        best_eval=best_eval,
        history=history,
        seconds_to_target=seconds_to_target,
        seconds=time.perf_counter() - started,
    )


def _shaped_fitness(batch: Any, bonus: float, population: int) -> np.ndarray:
    # shaping against the do-nothing plateau: failed episodes earn up to ``bonus`` for the
    # highest position reached (successes always rank above them since 100 > bonus)
    progress_made = (batch.max_position + 1.2) / (0.45 + 1.2)
    shaped = batch.returns + bonus * progress_made * ~batch.success
    return np.asarray(shaped.reshape(population, -1).mean(axis=1))


def _random_search_start(
    circuit: TWC, config: EvolutionConfig, rng: np.random.Generator
) -> np.ndarray:
    """Best of ``random_search`` candidates from the original FIURI search ranges
    (T in [0, 1], d in [0, 0.5], w in [0, 1]), as raw parameters."""
    from rnnlab.twc.circuit import inverse_softplus

    n = config.random_search
    n_sim = len(circuit.simulated_names)
    n_syn = len(circuit.synapse_keys)
    threshold = rng.uniform(0.0, 1.0, (n, n_sim))
    decay = rng.uniform(0.01, 0.5, (n, n_sim))
    weight = rng.uniform(0.01, 1.0, (n, n_syn))
    raw = np.concatenate(
        [
            threshold,
            inverse_softplus(torch.from_numpy(decay)).numpy(),
            inverse_softplus(torch.from_numpy(weight)).numpy(),
        ],
        axis=1,
    )
    episodes = 4
    seeds = rng.integers(1_000_000, 2**31 - 1, size=episodes)
    best, best_score = raw[0], -math.inf
    for chunk in range(0, n, 256):
        part = raw[chunk : chunk + 256]
        flat = torch.from_numpy(np.repeat(part, episodes, axis=0)).to(torch.float32)
        batch = run_episodes(
            circuit, np.tile(seeds, part.shape[0]), circuit.effective_from_flat_raw(flat)
        )
        scores = _shaped_fitness(batch, config.progress_bonus, part.shape[0])
        if scores.max() > best_score:
            best_score = float(scores.max())
            best = part[int(np.argmax(scores))]
    return np.asarray(best, dtype=np.float64)


def evolution_config_json(config: EvolutionConfig) -> dict[str, Any]:
    return {k: (None if v == float("inf") else v) for k, v in asdict(config).items()}
