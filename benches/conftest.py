"""Shared settings and fixtures of the CTRNN benchmarks (pytest-benchmark).

Every benchmark runs float32, T = 1000 frames per call, one Euler substep of dt = 0.1 per frame,
tanh, 16 inputs; torch uses 2 threads (the machine's cores), and so does rnnlab where its kernels
split work: batch rows over threads, or for one forward sequence with N >= 256 its neurons.
Each benchmark also checks its candidate's output against an independent implementation, so a
broken kernel cannot look fast.

Run with ``.venv/bin/python -m pytest benches --benchmark-only`` (``make bench``), or
``benches/report.py`` (``make bench-report``) to rewrite ``benches/RESULTS.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.torch_reference import TorchCTRNN

T = 1000  # frames per call
DT = 0.1
SUBSTEPS = 1
N_INPUTS = 16
N_OUTPUTS = 4
ACTIVATION = "tanh"
INTEGRATOR = "euler"
TORCH_THREADS = 2
SEED = 1234

torch.set_num_threads(TORCH_THREADS)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 tensor owning a copy of ``array`` (never a read-only view: torch warns)."""
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


def torch_ctrnn(params: dict[str, np.ndarray]) -> TorchCTRNN:
    """The float32 torch CTRNN with rnnlab's parameters (no mask buffer: W is dense)."""
    dense = {k: v for k, v in params.items() if k != "mask"}
    return TorchCTRNN.from_params(
        dense, activation=ACTIVATION, integrator=INTEGRATOR, dtype=torch.float32
    )


def rel_err(actual: Any, expected: Any) -> float:
    """max |actual − expected| / max |expected| (0 when both are exactly zero)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    diff = float(np.max(np.abs(a - e))) if e.size else 0.0
    return diff if scale == 0.0 else diff / scale


@dataclass
class Case:
    """One benchmark case: a float32 rnnlab network, its inputs, and lazily built baselines."""

    n: int
    batch: int
    net: CTRNN
    x: np.ndarray  # [B, T, n_in] float32
    target: np.ndarray  # [B, T, n_out] float32
    s0: np.ndarray  # [B, N] float32
    cache: dict[str, Any] = field(default_factory=dict)

    def torch_ctrnn(self) -> TorchCTRNN:
        if "torch_ctrnn" not in self.cache:
            self.cache["torch_ctrnn"] = torch_ctrnn(self.net.params)
        return self.cache["torch_ctrnn"]

    def torch_x(self) -> torch.Tensor:
        if "torch_x" not in self.cache:
            self.cache["torch_x"] = _tensor(self.x)
        return self.cache["torch_x"]

    def torch_target(self) -> torch.Tensor:
        if "torch_target" not in self.cache:
            self.cache["torch_target"] = _tensor(self.target)
        return self.cache["torch_target"]

    def torch_s0(self) -> torch.Tensor:
        if "torch_s0" not in self.cache:
            self.cache["torch_s0"] = _tensor(self.s0)
        return self.cache["torch_s0"]

    def extra_info(self, candidate: str, kind: str) -> dict[str, Any]:
        """What ``benches/report.py`` needs to tabulate a benchmark (stored in the JSON)."""
        return {
            "kind": kind,
            "candidate": candidate,
            "n": self.n,
            "batch": self.batch,
            "steps": T * SUBSTEPS,
            "frames": T,
            "dtype": "float32",
            "activation": self.net.activation,
        }


def make_case(n: int, batch: int, *, seed: int = SEED) -> Case:
    """A seeded float32 tanh network with a linear readout and seeded inputs and targets."""
    net = CTRNN(
        n_neurons=n,
        n_inputs=N_INPUTS,
        n_outputs=N_OUTPUTS,
        activation=ACTIVATION,
        integrator=INTEGRATOR,
        dtype="float32",
        readout="linear",
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1000 * n + batch)
    x = rng.standard_normal((batch, T, N_INPUTS)).astype(np.float32)
    target = rng.standard_normal((batch, T, N_OUTPUTS)).astype(np.float32)
    return Case(n, batch, net, x, target, np.zeros((batch, n), dtype=np.float32))


_CASES: dict[tuple[int, int], Case] = {}


@pytest.fixture(scope="session")
def case_factory() -> Callable[[int, int], Case]:
    """``case_factory(n, batch)``: the session-wide (cached) case for that size."""

    def get(n: int, batch: int) -> Case:
        key = (n, batch)
        if key not in _CASES:
            _CASES[key] = make_case(n, batch)
        return _CASES[key]

    return get


Measure = Callable[..., Any]


@pytest.fixture
def measure(benchmark: Any) -> Measure:
    """``measure(fn, budget_s=1.5, min_rounds=3, max_rounds=300) -> fn()``'s first result.

    Calls ``fn`` once untimed (the warm-up round; its result is returned for the correctness
    checks; a cheap ``fn`` is called a second time), picks the number of rounds from that call's
    duration so that one benchmark takes about ``budget_s`` seconds, then times ``fn`` with
    ``benchmark.pedantic`` (1 call per round, no further warm-up).
    """

    def run(
        fn: Callable[[], Any],
        *,
        budget_s: float = 1.5,
        min_rounds: int = 3,
        max_rounds: int = 300,
    ) -> Any:
        start = time.perf_counter()
        result = fn()
        took = time.perf_counter() - start
        if took < budget_s / 20:  # cheap: time a second, warm call to pick the rounds
            start = time.perf_counter()
            fn()
            took = time.perf_counter() - start
        rounds = int(min(max_rounds, max(min_rounds, budget_s / max(took, 1e-6))))
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
        return result

    return run
