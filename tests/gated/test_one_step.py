"""The closed-form one-step gradient equals torch autograd for every flag combination."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch.nn import functional

from rnnlab.gated import ByteLM
from rnnlab.gated.model import UPSTREAM_FLAGS
from rnnlab.gated.one_step import OneStepGradient, trained_parameter_names
from rnnlab.gated.train import parameters_without_gradient

ALL_FLAGS = [
    dict(zip(UPSTREAM_FLAGS, bits, strict=True))
    for bits in itertools.product([False, True], repeat=7)
    if bits[4] or bits[5]  # use_new_state or use_old_state
]
EXTRAS = [
    {"always_swish": True},
    {"additive_residual": True},
    {"carried_forget_gate": True},
    {"always_swish": True, "additive_residual": True, "carried_forget_gate": True},
]


def _autograd_step(
    model: ByteLM, inputs: torch.Tensor, targets: torch.Tensor, states: list[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor | None]]:
    model.zero_grad(set_to_none=True)
    logits, new_states = model(inputs, states)
    loss = functional.cross_entropy(logits, targets)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), [s.detach() for s in new_states], grads


def _check(model: ByteLM, batch: int = 5, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 256, (batch,), generator=generator)
    inputs[1] = inputs[0]  # a repeated byte: its embedding row accumulates two gradients
    targets = torch.randint(0, 256, (batch,), generator=generator)
    states = [
        torch.randn(batch, model.state_size, generator=generator, dtype=torch.float64)
        for _ in range(model.n_layers)
    ]
    loss, new_states, expected = _autograd_step(model, inputs, targets, states)
    step = OneStepGradient(model)
    our_loss, our_states = step(inputs, targets, states)
    torch.testing.assert_close(our_loss, loss, rtol=1e-12, atol=1e-13)
    for ours, theirs in zip(our_states, new_states, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-13)
    for name, parameter in model.named_parameters():
        if expected[name] is None:
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None, name
            torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-10, atol=1e-13)
    without = set(parameters_without_gradient(model))
    assert trained_parameter_names(model) == {n for n, _ in model.named_parameters()} - without


@pytest.mark.parametrize("n_layers", [1, 2])
def test_one_step_gradient_equals_autograd_for_all_flag_combinations(n_layers: int) -> None:
    for index, flags in enumerate(ALL_FLAGS):
        model = ByteLM(n_layers, 3, seed=index, **flags).double()
        _check(model, seed=index)


@pytest.mark.parametrize("extra", EXTRAS)
def test_one_step_gradient_equals_autograd_with_extra_options(extra: dict) -> None:
    for index, flags in enumerate(ALL_FLAGS[::5]):
        model = ByteLM(2, 3, embedding_size=4, seed=index, **flags, **extra).double()
        _check(model, seed=index)


def test_three_layers_and_a_layer_that_does_not_see_its_input() -> None:
    # the middle layer reads only its old state: nothing below it is trained
    model = ByteLM(3, 4, seed=1, use_new_state=False, use_old_state=True).double()
    _check(model)
    assert "embedding" not in trained_parameter_names(model)
    model = ByteLM(3, 4, seed=2, use_input_gate=True, use_new_state=False, use_old_state=True)
    _check(model.double())
    assert "embedding" in trained_parameter_names(model)


def test_train_run_uses_the_closed_form_step_and_matches_an_autograd_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from rnnlab.gated import one_step
    from rnnlab.gated.data import embedded_corpus, sample_windows, split_bytes
    from rnnlab.gated.train import Adam, TrainConfig, build_model, train_run

    arch = {"n_layers": 2, "state_size": 6, "use_input_gate": True, "use_output_gate": True}
    config = TrainConfig(
        steps=45, batch_size=3, window=16, log_every=5, eval_windows=1, eval_length=8, lr=0.01
    )
    corpus = embedded_corpus(20_000)
    calls = []
    original = one_step.OneStepGradient.__call__

    def counting(self: OneStepGradient, *args: Any) -> Any:
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(one_step.OneStepGradient, "__call__", counting)
    result = train_run(arch, config, seed=5, corpus=corpus)
    assert len(calls) == 45  # every k = 1 step took the closed-form path
    # the same training written with autograd: one Adam step per byte, state detached
    model = build_model(arch, seed=5)
    optimizer = Adam(list(model.named_parameters()), lr=config.lr)
    rng = np.random.Generator(np.random.PCG64(5))
    train = split_bytes(corpus, config.split).train
    losses: list[float] = []
    while len(losses) < config.steps:
        windows = torch.from_numpy(sample_windows(train, 3, 16, rng).T.copy())
        states = model.initial_state(3)
        for j in range(min(15, config.steps - len(losses))):
            logits, states = model(windows[j], states)
            loss = functional.cross_entropy(logits, windows[j + 1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            states = [s.detach() for s in states]
            losses.append(float(loss.detach()))
    expected = [float(np.mean(losses[i : i + 5])) for i in range(0, 45, 5)]
    np.testing.assert_allclose(result["curve_mean"], expected, rtol=1e-5)
    calls.clear()
    train_run(arch, TrainConfig(**{**config.as_dict(), "truncation": 3}), seed=5, corpus=corpus)
    assert calls == []  # truncated BPTT keeps autograd
