"""Sweep throughput for small models: 12 same-shape configs stacked in one process vs one by one.

The demo grid's 12 flag combinations (1 layer; FG on; SG, NS, OS, RES varied) at state size
S ∈ {32, 64}, batch 32, 100 training steps and a short evaluation each. Candidate ``stacked``:
:func:`rnnlab.gated.stacked.train_stacked` on all 12 at once; baseline ``one-by-one``:
:func:`rnnlab.gated.train.train_run` for each config in turn in the same process (this favours
the baseline: one-config-per-process also pays process start-up and imports per config).
1 torch thread. configs/hour = 12 × 3600 / mean seconds per call. Run:
``.venv/bin/python -m pytest benches/test_gated_throughput.py --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from rnnlab.gated.data import embedded_corpus
from rnnlab.gated.demo import DEMO_GRID
from rnnlab.gated.stacked import train_stacked
from rnnlab.gated.sweep import grid_configs
from rnnlab.gated.train import TrainConfig, train_run

BATCH = 32


def _setup(state_size: int) -> tuple[list[dict[str, Any]], TrainConfig, np.ndarray]:
    grid = {"grid": {**DEMO_GRID["grid"], "state_size": [state_size]}}
    archs = [c["arch"] for c in grid_configs(grid)]
    config = TrainConfig(
        steps=100,
        batch_size=BATCH,
        window=76,
        log_every=25,
        eval_windows=4,
        eval_length=32,
        device="cpu",
    )
    return archs, config, embedded_corpus(200_000)


@pytest.mark.parametrize("state_size", [32, 64])
@pytest.mark.parametrize("candidate", ["stacked", "one-by-one"])
def test_gated_sweep_throughput(
    benchmark: Any, measure: Any, candidate: str, state_size: int
) -> None:
    torch.set_num_threads(1)
    archs, config, corpus = _setup(state_size)
    seeds = list(range(len(archs)))

    def stacked() -> list[dict[str, Any]]:
        return train_stacked(archs, config, seeds=seeds, corpus=corpus)

    def one_by_one() -> list[dict[str, Any]]:
        return [
            train_run(a, config, seed=s, corpus=corpus) for a, s in zip(archs, seeds, strict=True)
        ]

    run = stacked if candidate == "stacked" else one_by_one
    benchmark.extra_info.update(
        {
            "kind": "gated-sweep-throughput",
            "candidate": candidate,
            "n": state_size,
            "batch": BATCH,
            "configs": len(archs),
            "steps": config.steps,
        }
    )
    results = measure(run, budget_s=6.0, min_rounds=2, max_rounds=10)
    # check: each config's training curve is the one it gets when trained alone
    reference = train_run(archs[0], config, seed=0, corpus=corpus)
    np.testing.assert_allclose(results[0]["curve_mean"], reference["curve_mean"], rtol=1e-4)
    assert len(results) == 12
