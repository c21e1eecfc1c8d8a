"""Population evaluation of 64 networks (N = 32, T = 1000 frames, one substep, float64) against
a loop of 64 single ``CTRNN.run`` calls, side by side. Issue target on 2 free cores: >= 1.8x.

The population spreads its members over 2 threads (GIL released inside the kernel); the loop
runs them one after another. The outputs are checked to be bit-identical first; the ratio is
recorded in ``extra_info`` and printed with the load average (not asserted: a shared machine's
load decides it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from rnnlab.ctrnn import CTRNN, Population

P, N, T, DT = 64, 32, 1000, 0.1
RATES: dict[str, float] = {}


def setup() -> tuple[list[CTRNN], np.ndarray]:
    nets = [CTRNN(N, 2, 2, seed=s, activation="tanh", backend="dense", threads=1) for s in range(P)]
    x = np.random.default_rng(0).uniform(-1, 1, size=(T, 2))
    return nets, x


@pytest.mark.parametrize("candidate", ["loop", "population"])
def test_population_vs_loop(benchmark: Any, candidate: str) -> None:
    nets, x = setup()
    s0 = np.zeros(N)
    population = Population([n.params for n in nets], activation="tanh", threads=2)
    benchmark.group = f"population P={P} N={N} T={T}"
    benchmark.extra_info.update(
        {"kind": "population_run", "candidate": candidate, "n": N, "batch": P, "frames": T}
    )

    def loop() -> np.ndarray:
        return np.stack([net.run(x, dt=DT, s0=s0) for net in nets])

    def together() -> np.ndarray:
        return population.run(x, dt=DT, s0=s0)

    np.testing.assert_array_equal(together(), loop())
    fn = loop if candidate == "loop" else together
    benchmark.pedantic(fn, rounds=10, iterations=1, warmup_rounds=1)
    RATES[candidate] = 1.0 / benchmark.stats.stats.mean
    if "loop" in RATES and candidate == "population":
        ratio = RATES["population"] / RATES["loop"]
        benchmark.extra_info["ratio_to_loop"] = ratio
        print(f"\npopulation: {ratio:.2f}x the loop (load average {os.getloadavg()[0]:.1f})")
