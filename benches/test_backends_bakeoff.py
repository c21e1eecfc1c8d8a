"""CTRNN execution backends on the bake-off workload (float64), side by side in one process.

One benchmark round is one train step of ``rnnlab ctrnn bakeoff``: the truncated-BPTT gradient
over a retained window (chunks of 10 frames started from recorded states, 50 substeps per
frame) plus an SGD step. Groups:

- ``bakeoff N=200``: N = 200, density 1, a 60-frame window (3000 substeps): ``dense`` (one
  thread), ``threaded`` (2 threads), ``distributed`` (2 local worker processes, 1 thread each).
  Issue targets on 2 free cores: threaded >= 1.7x dense, distributed >= 1.3x dense.
- ``bakeoff N=1024 density 0.05``: ``dense`` against ``sparse`` (both one thread) on a 10-frame
  window (500 substeps; the 60-frame window takes several seconds per dense step). Target:
  sparse >= 5x dense.

Every candidate's gradient is first checked against dense's (1e-10 relative). The ratios are
recorded in ``extra_info`` and printed; they are not asserted, because a shared machine's load
decides them (the numbers and the load at the time are in docs/backends.md).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from rnnlab import _native
from rnnlab.ctrnn import CTRNN

SUBSTEPS, DT, TRUNCATION, LR, SEED = 50, 0.1, 10, 1e-3, 0
RATES: dict[str, dict[str, float]] = {}


def window(n: int, frames: int) -> dict[str, np.ndarray]:
    """A seeded window as the churn loop leaves it: inputs, targets, start and recorded states."""
    rng = np.random.default_rng(SEED + n)
    x = rng.uniform(size=(frames, 1))
    target = rng.uniform(size=(frames, 1))
    net = CTRNN(n, 1, 1, seed=SEED, backend="dense", threads=1)
    _, states = net.run(x, dt=DT, substeps=SUBSTEPS, s0=np.zeros(n), return_states=True)
    return {"x": x, "target": target, "s0": np.zeros(n), "recorded_states": states}


def options(backend: str) -> dict[str, Any]:
    if backend == "threaded":
        return {"threads": 2}
    if backend == "distributed":
        return {"workers": 2, "threads": 1}
    return {"threads": 1}


def train_step(net: CTRNN, data: dict[str, np.ndarray]) -> Any:
    raw = net.trainable_vector()
    opt = _native.Optimizer("sgd", raw.size, LR, momentum=0.0, clip_norm=None)
    params = {k: v.copy() for k, v in net.params.items()}

    def step() -> tuple[float, dict[str, np.ndarray]]:
        net.params = {k: v.copy() for k, v in params.items()}  # every round from the same point
        loss, grads = net.loss_and_grad(
            data["x"],
            data["target"],
            dt=DT,
            substeps=SUBSTEPS,
            truncation=TRUNCATION,
            s0=data["s0"],
            recorded_states=data["recorded_states"],
        )
        opt.step(raw.copy(), net.trainable_gradient(raw, grads))
        return loss, grads

    return step


def check_against_dense(n: int, density: float, data: dict[str, np.ndarray], got: Any) -> None:
    dense = CTRNN(n, 1, 1, density=density, seed=SEED, backend="dense", threads=1)
    loss, grads = dense.loss_and_grad(
        data["x"],
        data["target"],
        dt=DT,
        substeps=SUBSTEPS,
        truncation=TRUNCATION,
        s0=data["s0"],
        recorded_states=data["recorded_states"],
    )
    assert got[0] == pytest.approx(loss, rel=1e-10)
    for name in ("W", "tau", "U"):
        scale = np.max(np.abs(grads[name]))
        assert np.max(np.abs(got[1][name] - grads[name])) <= 1e-10 * scale


def run_candidate(
    benchmark: Any, group: str, n: int, density: float, frames: int, backend: str, rounds: int
) -> None:
    data = window(n, frames)
    benchmark.group = group
    benchmark.extra_info.update(
        {
            "kind": "train_step",
            "candidate": backend,
            "n": n,
            "batch": 1,
            "frames": frames,
            "substeps": SUBSTEPS,
            "density": density,
            "dtype": "float64",
        }
    )
    net = CTRNN(n, 1, 1, density=density, seed=SEED, backend=backend, **options(backend))
    try:
        step = train_step(net, data)
        check_against_dense(n, density, data, step())
        benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)
    finally:
        net.close()
    rate = 1.0 / benchmark.stats.stats.mean
    RATES.setdefault(group, {})[backend] = rate
    if "dense" in RATES[group] and backend != "dense":
        ratio = rate / RATES[group]["dense"]
        benchmark.extra_info["ratio_to_dense"] = ratio
        print(
            f"\n{group}: {backend} {rate:.2f} steps/s = {ratio:.2f}x dense "
            f"(load average {os.getloadavg()[0]:.1f}, {time.ctime()})"
        )


@pytest.mark.parametrize("backend", ["dense", "threaded", "distributed"])
def test_bakeoff_n200(benchmark: Any, backend: str) -> None:
    run_candidate(benchmark, "bakeoff N=200", 200, 1.0, 60, backend, rounds=16)


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_bakeoff_n1024_sparse(benchmark: Any, backend: str) -> None:
    run_candidate(benchmark, "bakeoff N=1024 density 0.05", 1024, 0.05, 10, backend, rounds=3)
