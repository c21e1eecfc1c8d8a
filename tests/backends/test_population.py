"""Population evaluation equals P separate runs; evolve is seeded and improves its fitness."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, ShapeError
from rnnlab.ctrnn import CTRNN, Population, evolve


def members(count: int = 5):
    return [CTRNN(7, 2, 2, seed=s, activation="tanh", tau=0.4 + 0.1 * s) for s in range(count)]


def test_population_equals_separate_runs():
    nets = members()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3, 15, 2))
    s0 = rng.uniform(-0.5, 0.5, size=7)
    population = Population([n.params for n in nets], activation="tanh", threads=3)
    y = population.run(x, dt=0.1, substeps=3, s0=s0)
    assert y.shape == (5, 3, 15, 2)
    for p, net in enumerate(nets):
        np.testing.assert_array_equal(y[p], net.run(x, dt=0.1, substeps=3, s0=s0))
    # one input per member, unbatched, irregular frame times
    xs = rng.uniform(-1, 1, size=(5, 15, 2))
    times = np.cumsum(np.r_[0.0, rng.uniform(0.05, 0.2, size=15)])
    y = population.run(xs, times=times, substeps=2, per_member=True)
    assert y.shape == (5, 15, 2)
    for p, net in enumerate(nets):
        np.testing.assert_array_equal(y[p], net.run(xs[p], times=times, substeps=2, s0=np.zeros(7)))
    # stacked parameters give the same population
    stacked = {k: np.stack([n.params[k] for n in nets]) for k in nets[0].params}
    np.testing.assert_array_equal(
        Population(stacked, activation="tanh").run(xs, times=times, substeps=2, per_member=True), y
    )


def test_population_float32_and_thread_counts_agree_bit_for_bit():
    nets = [
        CTRNN(6, 1, 2, seed=s, activation="logistic", integrator="rk4", dtype="float32")
        for s in range(9)
    ]
    x = np.random.default_rng(1).uniform(-1, 1, size=(2, 12, 1)).astype(np.float32)
    runs = [
        Population(
            [n.params for n in nets], activation="logistic", integrator="rk4", threads=t
        ).run(x, dt=0.05, substeps=2)
        for t in (1, 4)
    ]
    assert runs[0].dtype == np.float32
    np.testing.assert_array_equal(runs[0], runs[1])
    for p, net in enumerate(nets):
        np.testing.assert_array_equal(runs[0][p], net.run(x, dt=0.05, substeps=2, s0=np.zeros(6)))


def test_population_rejects_a_wrong_member_axis():
    population = Population([n.params for n in members(3)], activation="tanh")
    with pytest.raises(ShapeError, match="per_member"):
        population.run(np.zeros((2, 5, 2)), dt=0.1, per_member=True)
    with pytest.raises(ShapeError, match="x"):
        population.run(np.zeros((5, 3)), dt=0.1)


def test_population_rejects_mixed_shapes():
    with pytest.raises(ShapeError, match=r"params_batch\[1\]"):
        Population([CTRNN(4, 1, 1).params, CTRNN(5, 1, 1).params])
    with pytest.raises(ConfigError, match="at least one"):
        Population([])


def test_evolve_is_seeded_and_improves():
    t = np.arange(1, 41) * 0.1
    target = (0.3 + 0.2 * np.sin(t))[:, None]
    x = np.sin(t)[:, None]

    def fitness(population: Population) -> np.ndarray:
        y = population.run(x, dt=0.1, substeps=2)
        return -np.mean((y - target) ** 2, axis=(1, 2))

    results = []
    for _ in range(2):
        net = CTRNN(5, 1, 1, seed=1, readout="linear", activation="tanh")
        history = evolve(net, fitness, popsize=16, generations=25, sigma=0.05, lr=0.05, seed=3)
        results.append((history["center_fitness"], net.trainable_vector()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    centre = results[0][0]
    assert -np.mean(centre[-5:]) < 0.5 * -np.mean(centre[:3])  # the MSE at least halves
    with pytest.raises(ConfigError, match="popsize"):
        evolve(net, fitness, popsize=7)
