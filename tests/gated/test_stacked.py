"""Stacked training of same-shape configs equals separate training (up to rounding)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional

from rnnlab import ConfigError
from rnnlab.gated import ByteLM
from rnnlab.gated.data import embedded_corpus
from rnnlab.gated.stacked import StackedByteLM, StackedOneStepGradient, train_stacked
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


def test_stacked_group_checkpoints_each_run_and_resumes_bit_exactly(tmp_path: Path) -> None:
    corpus = embedded_corpus(20_000)
    archs = [c["arch"] for c in grid_configs(GRID)][1::5]
    seeds = list(range(10, 10 + len(archs)))
    config = TrainConfig(**{**CONFIG.as_dict(), "checkpoint_every_s": 0.0, "split": CONFIG.split})
    full = train_stacked(archs, config, seeds=seeds, corpus=corpus)
    folders = [tmp_path / f"run{g}" for g in range(len(archs))]
    for folder in folders:
        folder.mkdir()

    class StopError(Exception):
        pass

    def stop_after_first(step: int) -> None:
        raise StopError

    with pytest.raises(StopError):
        train_stacked(
            archs,
            config,
            seeds=seeds,
            corpus=corpus,
            folders=folders,
            on_checkpoint=stop_after_first,
        )
    for folder in folders:  # each member wrote a single-run checkpoint
        meta = json.loads((folder / "checkpoint.json").read_text())
        assert meta["progress"]["step"] == 20
        assert [p.name for p in folder.glob("*.safetensors")] == ["checkpoint-20.safetensors"]
    resumed = train_stacked(archs, config, seeds=seeds, corpus=corpus, folders=folders)
    for a, b in zip(resumed, full, strict=True):
        assert a["resumed_from_step"] == 20
        assert a["curve_ema"] == b["curve_ema"]
        assert a["curve_mean"] == b["curve_mean"]
        assert a["val_loss"] == b["val_loss"]
        assert a["untrained_parameters"] == b["untrained_parameters"]
    # the same format as a single run: train_run resumes a stacked member's checkpoint
    alone = train_run(archs[0], config, seed=seeds[0], corpus=corpus, folder=folders[0])
    assert alone["resumed_from_step"] == 20
    np.testing.assert_allclose(alone["curve_mean"], full[0]["curve_mean"], rtol=1e-5)
    # a group whose members are not all at the same step starts afresh (same result)
    for folder in folders[1:]:
        for item in folder.iterdir():
            item.unlink()
    fresh = train_stacked(archs, config, seeds=seeds, corpus=corpus, folders=folders)
    assert [r["resumed_from_step"] for r in fresh] == [0] * len(archs)
    assert [r["curve_ema"] for r in fresh] == [r["curve_ema"] for r in full]


@pytest.mark.parametrize("grid", [GRID, *OTHER_GRIDS])
def test_stacked_one_step_gradient_equals_autograd(grid: dict) -> None:
    archs = [c["arch"] for c in grid_configs(grid)]
    models = [
        ByteLM(
            2, 4, seed=i, **{k: v for k, v in a.items() if k not in ("n_layers", "state_size")}
        ).double()
        for i, a in enumerate(archs)
    ]
    stacked = StackedByteLM(models).double()
    generator = torch.Generator().manual_seed(3)
    G = len(models)
    inputs = torch.randint(0, 256, (G, 5), generator=generator)
    inputs[:, 1] = inputs[:, 0]  # repeated bytes accumulate in one embedding row
    targets = torch.randint(0, 256, (G, 5), generator=generator)
    states = [torch.randn(G, 5, 4, dtype=torch.float64, generator=generator) for _ in range(2)]
    logits, new_states = stacked(inputs, states)
    losses = torch.stack([functional.cross_entropy(logits[g], targets[g]) for g in range(G)])
    losses.sum().backward()
    expected = {name: p.grad for name, p in stacked.named_parameters()}
    stacked.zero_grad(set_to_none=True)
    our_losses, our_states = StackedOneStepGradient(stacked)(inputs, targets, states)
    torch.testing.assert_close(our_losses, losses.detach(), rtol=1e-12, atol=1e-13)
    for ours, theirs in zip(our_states, new_states, strict=True):
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-13)
    for name, parameter in stacked.named_parameters():
        reference = expected[name]
        if reference is None:
            assert parameter.grad is None or not parameter.grad.any(), name
        else:
            assert parameter.grad is not None, name
            torch.testing.assert_close(parameter.grad, reference, rtol=1e-10, atol=1e-13)
