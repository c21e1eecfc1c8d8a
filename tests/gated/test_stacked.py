"""Stacked training of same-shape configs equals separate training (up to rounding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab import ConfigError
from rnnlab.gated import ByteLM
from rnnlab.gated.data import embedded_corpus
from rnnlab.gated.stacked import StackedByteLM, train_stacked
from rnnlab.gated.sweep import Sweep, grid_configs, run_worker
from rnnlab.gated.train import TrainConfig, train_run

CONFIG = TrainConfig(
    steps=40,
    batch_size=3,
    window=21,
    log_every=10,
    eval_windows=2,
    eval_length=16,
    device="cpu",
    lr=0.01,
)
GRID = {
    "grid": {
        "use_input_gate": [True, False],
        "use_output_gate": [True, False],
        "use_new_state": [True, False],
        "use_old_state": [True, False],
        "use_state_gate": [True],
        "use_forget_gate": [True],
        "use_residual": [True, False],
        "n_layers": [2],
        "state_size": [4],
    }
}


OTHER_GRIDS = [
    # flags used by none or all of the group (parts nobody uses are not built)
    {
        "grid": {
            "use_forget_gate": [True],
            "use_state_gate": [True, False],
            "use_new_state": [True, False],
            "use_old_state": [True, False],
            "use_residual": [True, False],
            "n_layers": [2],
            "state_size": [4],
        }
    },
    {
        "grid": {
            "use_output_gate": [True],
            "use_input_gate": [True],
            "use_new_state": [True],
            "use_state_gate": [True, False],
            "n_layers": [2],
            "state_size": [4],
        }
    },
    {
        "grid": {
            "use_new_state": [False],
            "use_old_state": [True],
            "use_residual": [True, False],
            "n_layers": [2],
            "state_size": [4],
            "seeds": [0, 1],
        }
    },
]


@pytest.mark.parametrize("grid", [GRID, *OTHER_GRIDS])
def test_stacked_forward_equals_each_model(grid: dict) -> None:
    archs = [c["arch"] for c in grid_configs(grid)]
    models = [
        ByteLM(
            2, 4, seed=i, **{k: v for k, v in a.items() if k not in ("n_layers", "state_size")}
        ).double()
        for i, a in enumerate(archs)
    ]
    stacked = StackedByteLM(models).double()
    tokens = torch.randint(0, 256, (len(models), 3), generator=torch.Generator().manual_seed(0))
    states = [torch.randn(len(models), 3, 4, dtype=torch.float64) for _ in range(2)]
    logits, new = stacked(tokens, states)
    for g, model in enumerate(models):
        ref_logits, ref_new = model(tokens[g], [s[g] for s in states])
        torch.testing.assert_close(logits[g], ref_logits)
        for a, b in zip(new, ref_new, strict=True):
            torch.testing.assert_close(a[g], b)


def test_stacked_training_equals_separate_training() -> None:
    corpus = embedded_corpus(20_000)
    archs = [c["arch"] for c in grid_configs(GRID)][::4]
    seeds = list(range(len(archs)))
    together = train_stacked(archs, CONFIG, seeds=seeds, corpus=corpus)
    for arch, seed, result in zip(archs, seeds, together, strict=True):
        alone = train_run(arch, CONFIG, seed=seed, corpus=corpus)
        np.testing.assert_allclose(result["curve_mean"], alone["curve_mean"], rtol=1e-5)
        assert result["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-5)
        assert result["val_loss_state_zeroed"] == pytest.approx(
            alone["val_loss_state_zeroed"], rel=1e-5
        )
        assert result["untrained_parameters"] == alone["untrained_parameters"]


def test_stacking_refuses_mixed_shapes() -> None:
    with pytest.raises(ConfigError, match="same n_layers"):
        StackedByteLM([ByteLM(1, 4), ByteLM(1, 8)])
    with pytest.raises(ConfigError, match="extra options"):
        StackedByteLM([ByteLM(1, 4, always_swish=True)])


def test_worker_with_stack_finishes_each_run_once(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path)
    grid = {
        "grid": {
            "use_new_state": [True, False],
            "use_old_state": [True, False],
            "n_layers": [1],
            "state_size": [4, 6],
        }
    }
    sweep.init(grid_configs(grid), CONFIG.as_dict())
    finished = run_worker(tmp_path, stack=3)
    assert sorted(finished) == sorted(c["run_id"] for c in sweep.load()["configs"])
    stacked = [r for r in sweep.results() if r.get("stacked_with", 1) > 1]
    assert stacked  # at least one group of the same shape was trained together
    assert {s.status for s in sweep.states()} == {"done"}
