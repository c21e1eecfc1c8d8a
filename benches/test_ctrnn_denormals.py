"""A state decaying through the subnormal range: rnnlab (FTZ/DAZ) against numpy.

N = 256, B = 1, W = 0, zero input, τ = 1, dt = 0.1, tanh, T = 1000: every neuron decays as
s ← 0.9·s. From s0 = 1e-30 a float32 state leaves the normal range (< 1.18e-38) after ~170 steps
and is subnormal for the next ~150. The control group runs the same decay from s0 = 1e20, which
stays in the normal range for all 1000 steps (it ends near 1.7e-26).

Candidates:

- ``rnnlab``: ``CTRNN.run``; its kernels set FTZ/DAZ, so no subnormal is ever produced.
- ``numpy``: ``rnnlab.ctrnn.reference.forward``. It computes in float64, where 1e-30·0.9^1000
  (≈ 2e-76) is still normal: the reference never meets a subnormal.
- ``numpy_f32``: the same Euler loop written in float32 numpy, whose state does go subnormal
  (the check asserts it), i.e. what a float32 numpy user meets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rnnlab.ctrnn import CTRNN, reference

from .conftest import ACTIVATION, DT, INTEGRATOR, N_INPUTS, N_OUTPUTS, SEED, SUBSTEPS, T

N = 256
TINY = np.finfo(np.float32).tiny  # smallest normal float32, 1.18e-38
DECAYING = 1e-30
CONTROL = 1e20
CANDIDATES = ("rnnlab", "numpy", "numpy_f32")
TOLERANCE = 1e-4


def decaying_net() -> CTRNN:
    """W = 0, τ = 1, θ = 0, g = 1, seeded U and V (the input is zero, so U does not matter)."""
    rng = np.random.default_rng(SEED)
    params = {
        "W": np.zeros((N, N), dtype=np.float32),
        "tau": np.ones(N, dtype=np.float32),
        "theta": np.zeros(N, dtype=np.float32),
        "gain": np.ones(N, dtype=np.float32),
        "U": rng.uniform(-0.2, 0.2, size=(N, N_INPUTS)).astype(np.float32),
        "V": rng.uniform(-0.15, 0.15, size=(N_OUTPUTS, N)).astype(np.float32),
        "c": np.zeros(N_OUTPUTS, dtype=np.float32),
    }
    return CTRNN.from_params(params, activation=ACTIVATION, integrator=INTEGRATOR, readout="linear")


def numpy_f32_forward(
    params: dict[str, np.ndarray], x: np.ndarray, s0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's Euler/tanh loop, in float32 throughout (returns y and the states)."""
    W, U, V, c = params["W"], params["U"], params["V"], params["c"]
    gain, theta = params["gain"], params["theta"]
    a = np.float32(DT / SUBSTEPS) / params["tau"]
    ux = x @ U.T
    s = s0.copy()
    states = np.empty((x.shape[0], x.shape[1], W.shape[0]), dtype=np.float32)
    for k in range(x.shape[1]):
        for _ in range(SUBSTEPS):
            s = s + a * (np.tanh(gain * (s + theta)) @ W.T + ux[:, k] - s)
        states[:, k] = s
    return states @ V.T + c, states


def subnormal_count(a: np.ndarray) -> int:
    return int(np.count_nonzero((a != 0) & (np.abs(a) < TINY)))


def check_trajectory(states: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Relative agreement while the reference is well inside the normal range, else ``atol``."""
    normal = np.abs(expected) > 100 * atol
    assert np.all(np.isfinite(states))
    diff = np.abs(states.astype(np.float64) - expected)
    assert np.all(diff[normal] <= TOLERANCE * np.abs(expected[normal]))
    assert np.all(diff[~normal] <= atol)


@pytest.mark.parametrize("s0_value", [DECAYING, CONTROL], ids=["1e-30", "1e20"])
@pytest.mark.parametrize("candidate", CANDIDATES)
def test_decay(benchmark: Any, measure: Any, candidate: str, s0_value: float) -> None:
    net = decaying_net()
    x = np.zeros((1, T, N_INPUTS), dtype=np.float32)
    s0 = np.full((1, N), s0_value, dtype=np.float32)
    control = s0_value == CONTROL
    benchmark.group = f"denormals{'-control' if control else ''} N={N} s0={s0_value:g}"
    benchmark.extra_info.update(
        {
            "kind": "denormals-control" if control else "denormals",
            "candidate": candidate,
            "n": N,
            "batch": 1,
            "steps": T * SUBSTEPS,
            "frames": T,
            "dtype": "float32",
            "activation": ACTIVATION,
            "s0": s0_value,
        }
    )
    _, expected = reference.forward(
        net.params, x, DT, SUBSTEPS, s0, activation=ACTIVATION, integrator=INTEGRATOR
    )
    # Once |a·s| < FLT_MIN the Euler increment flushes to zero under FTZ and the state stops
    # decaying: rnnlab's trajectory may stall near FLT_MIN / a instead of reaching 0.
    a = DT / SUBSTEPS  # τ = 1
    stall = 2 * TINY / a

    if candidate == "rnnlab":
        y = measure(lambda: net.run(x, dt=DT, substeps=SUBSTEPS, s0=s0))
        _, states = net.run(x, dt=DT, substeps=SUBSTEPS, s0=s0, return_states=True)
        V, c = net.params["V"], net.params["c"]
        assert np.allclose(y, states @ V.T + c, rtol=TOLERANCE, atol=stall * np.abs(V).sum())
        assert subnormal_count(states) == 0
        check_trajectory(states, expected, atol=stall)
        benchmark.extra_info["subnormal_states"] = 0
        benchmark.extra_info["final_state_max"] = float(np.max(np.abs(states[:, -1])))
    elif candidate == "numpy":
        y, states = measure(
            lambda: reference.forward(
                net.params, x, DT, SUBSTEPS, s0, activation=ACTIVATION, integrator=INTEGRATOR
            ),
            budget_s=1.0,
        )
        assert np.array_equal(states, expected)
        benchmark.extra_info["subnormal_states"] = int(
            np.count_nonzero((states != 0) & (np.abs(states) < np.finfo(np.float64).tiny))
        )
        benchmark.extra_info["final_state_max"] = float(np.max(np.abs(states[:, -1])))
    else:
        y, states = measure(lambda: numpy_f32_forward(net.params, x, s0), budget_s=1.0)
        count = subnormal_count(states)
        if control:
            assert count == 0
        else:
            assert count > 0, "the float32 numpy trajectory should pass through subnormals"
        check_trajectory(states, expected, atol=TINY)
        benchmark.extra_info["subnormal_states"] = count
        benchmark.extra_info["final_state_max"] = float(np.max(np.abs(states[:, -1])))
    assert y.shape == (1, T, N_OUTPUTS)
