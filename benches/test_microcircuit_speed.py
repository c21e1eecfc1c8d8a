"""Microcircuit time loop: the fused Rust kernel against the numpy per-step reference.

Both candidates do the same work per call: ``STEPS[n]`` steps of PAL with OU noise, all
plasticity on (forward, lateral, backward, with target) for a batch of 10 seeds, on the
5-20-10-20-5 network (``n`` = 5) and the 1-1-1 network (``n`` = 1). The ratio of the two mean
times is the speed-up per seed-step. Each candidate's final state is first checked against the
other (1e-10).

Run: ``.venv/bin/python -m pytest benches/test_microcircuit_speed.py --benchmark-only``
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rnnlab.microcircuit.fast import FastKernel
from rnnlab.microcircuit.network import init_batch
from rnnlab.microcircuit.params import params_from_dict
from rnnlab.microcircuit.reference import reference_run

BATCH = 10
NETWORKS = {5: [5, 20, 10, 20, 5], 1: [1, 1, 1]}
STEPS = {5: 100, 1: 200}
FLAGS = {"learn_fw": True, "learn_lat": True, "learn_bw": True}


def _case(n: int) -> tuple[Any, ...]:
    layers = NETWORKS[n]
    n_layers, n_hidden = len(layers) - 1, len(layers) - 2
    params = params_from_dict(
        {
            "layers": layers,
            "model_type": "PAL",
            "random_seed": list(range(BATCH)),
            "eta_fw": [1.0] * n_layers,
            "eta_bw": [50.0] * n_hidden,
            "eta_IP": [1.0] * n_hidden,
            "eta_PI": [5.0] * n_hidden,
            "alpha": [1e-5] * n_hidden,
            "noise_scale": [0.05] * n_hidden,
            "dWPP_low_pass": True,
        }
    )
    opts, layout, state = init_batch(params, params.seeds)
    rng = np.random.default_rng(0)
    inputs = np.repeat(rng.uniform(0, 1, (BATCH, 1, layers[0])), STEPS[n], axis=1)
    targets = np.repeat(rng.uniform(0, 1, (BATCH, 1, layers[-1])), STEPS[n], axis=1)
    return params, opts, layout, state, inputs, targets


@pytest.mark.parametrize("n", sorted(NETWORKS))
@pytest.mark.parametrize("candidate", ["rnnlab", "numpy"])
def test_microcircuit_steps(benchmark: Any, measure: Any, n: int, candidate: str) -> None:
    params, opts, layout, state, inputs, targets = _case(n)
    benchmark.group = f"microcircuit PAL {'-'.join(map(str, NETWORKS[n]))}, {BATCH} seeds"
    benchmark.extra_info.update(
        {
            "kind": "microcircuit_steps",
            "candidate": candidate,
            "n": n,
            "batch": BATCH,
            "steps": STEPS[n],
        }
    )
    kernel = FastKernel(opts, layout)
    expected = state.copy()
    reference_run(opts, layout, expected, inputs, targets, seeds=params.seeds, step0=0, **FLAGS)
    if candidate == "rnnlab":

        def fast() -> np.ndarray:
            work = state.copy()
            kernel.run(work, inputs, targets, seeds=params.seeds, step0=0, **FLAGS)
            return work

        out = measure(fast)
    else:

        def numpy_reference() -> np.ndarray:
            work = state.copy()
            reference_run(opts, layout, work, inputs, targets, seeds=params.seeds, step0=0, **FLAGS)
            return work

        out = measure(numpy_reference, budget_s=3.0)
    np.testing.assert_allclose(out, expected, atol=1e-10, rtol=0)
