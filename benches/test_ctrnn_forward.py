"""Forward pass, B = 1: rnnlab ``CTRNN.run`` against numpy and torch.

Candidates (one pytest-benchmark group per N):

- ``rnnlab``: ``CTRNN.run`` (Rust kernel, float32; from N = 256 on the neurons are split over
  the machine's cores, on one core below).
- ``numpy``: ``rnnlab.ctrnn.reference.forward``, the readable numpy reference (it computes in
  float64 whatever the input dtype).
- ``torch_eager``: ``TorchCTRNN`` (the same equations in torch, float32) under ``no_grad``.
- ``torch_rnn``: ``torch.nn.RNN(16, N, nonlinearity="tanh")`` under ``no_grad``, the layer users
  would pick instead (a different, discrete-time model: timed as context, checked for shape).

rnnlab and torch_eager are checked against the numpy reference (relative error < 1e-4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from rnnlab.ctrnn import reference

from .conftest import ACTIVATION, DT, INTEGRATOR, N_INPUTS, SUBSTEPS, Case, T, rel_err

CANDIDATES = ("rnnlab", "numpy", "torch_eager", "torch_rnn")
SIZES = (64, 256, 1024)
TOLERANCE = 1e-4


def numpy_forward(case: Case) -> np.ndarray:
    y, _ = reference.forward(
        case.net.params,
        case.x,
        DT,
        SUBSTEPS,
        case.s0,
        activation=ACTIVATION,
        integrator=INTEGRATOR,
    )
    return y


def _expected(case: Case) -> np.ndarray:
    if "numpy_forward" not in case.cache:
        case.cache["numpy_forward"] = numpy_forward(case)
    return case.cache["numpy_forward"]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("candidate", CANDIDATES)
def test_forward(benchmark: Any, measure: Any, case_factory: Any, n: int, candidate: str) -> None:
    case = case_factory(n, 1)
    benchmark.group = f"forward B=1 N={n}"
    benchmark.extra_info.update(case.extra_info(candidate, "forward"))

    if candidate == "rnnlab":
        net, x, s0 = case.net, case.x, case.s0
        y = measure(lambda: net.run(x, dt=DT, substeps=SUBSTEPS, s0=s0))
        assert rel_err(y, _expected(case)) < TOLERANCE
    elif candidate == "numpy":
        y = measure(lambda: numpy_forward(case), budget_s=1.0)
        case.cache.setdefault("numpy_forward", y)
        assert y.shape == (1, T, case.net.n_outputs)
        assert np.all(np.isfinite(y))
    elif candidate == "torch_eager":
        model, xt, s0t = case.torch_ctrnn(), case.torch_x(), case.torch_s0()

        def torch_eager() -> torch.Tensor:
            with torch.no_grad():
                return model(xt, DT, SUBSTEPS, s0=s0t)[0]

        y = measure(torch_eager)
        assert rel_err(y.numpy(), _expected(case)) < TOLERANCE
    else:
        torch.manual_seed(0)
        rnn = torch.nn.RNN(N_INPUTS, n, nonlinearity="tanh", batch_first=True)
        xt = case.torch_x()

        def torch_rnn() -> torch.Tensor:
            with torch.no_grad():
                return rnn(xt)[0]

        out = measure(torch_rnn)
        assert tuple(out.shape) == (1, T, n)
        assert bool(torch.isfinite(out).all())
