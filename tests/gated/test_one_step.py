"""The closed-form one-step gradient equals torch autograd for every flag combination."""

from __future__ import annotations

import itertools

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
