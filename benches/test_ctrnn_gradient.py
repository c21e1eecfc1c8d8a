"""Loss and gradient (full BPTT over T = 1000 frames): rnnlab against torch autograd.

Candidates (one pytest-benchmark group per (B, N)):

- ``rnnlab``: ``CTRNN.loss_and_grad`` (MSE of a 4-output linear readout; adjoint BPTT in Rust,
  float32, one thread), which also returns the gradient for the start state.
- ``torch_autograd``: ``TorchCTRNN`` in float32, forward + MSE + ``backward()``.
- ``torch_rnn``: ``torch.nn.RNN(16, N, nonlinearity="tanh")`` + ``nn.Linear(N, 4)``, forward +
  MSE + ``backward()``: the discrete-time layer users would pick instead, timed as context.

rnnlab's loss and gradients are checked against torch autograd's (float32 both).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from .conftest import DT, N_INPUTS, N_OUTPUTS, SUBSTEPS, Case

CANDIDATES = ("rnnlab", "torch_autograd", "torch_rnn")
SIZES = (64, 256)
BATCHES = (1, 32)
GRAD_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")
LOSS_TOLERANCE = 1e-4
GRAD_TOLERANCE = 1e-3  # ‖g_rnnlab − g_torch‖ / ‖g_torch‖ per parameter, float32 both


def torch_step(case: Case) -> Any:
    """One torch autograd evaluation as a closure; its gradients stay in the model's .grad."""
    model = case.torch_ctrnn()
    xt, tt, s0t = case.torch_x(), case.torch_target(), case.torch_s0()

    def step() -> float:
        model.zero_grad(set_to_none=True)
        y, _ = model(xt, DT, SUBSTEPS, s0=s0t)
        loss = torch.mean((y - tt) ** 2)
        loss.backward()
        return float(loss.detach())

    return step


def _model_grads(case: Case) -> dict[str, np.ndarray]:
    model = case.torch_ctrnn()
    return {k: getattr(model, k).grad.numpy().copy() for k in GRAD_NAMES}


def torch_reference(case: Case) -> tuple[float, dict[str, np.ndarray]]:
    """torch autograd's (loss, grads) for the case, computed once."""
    if "torch_loss" not in case.cache:
        case.cache["torch_loss"] = torch_step(case)()
        case.cache["torch_grads"] = _model_grads(case)
    return case.cache["torch_loss"], case.cache["torch_grads"]


def assert_agree(loss: float, grads: dict[str, Any], ref_loss: float, ref: dict[str, Any]) -> None:
    assert abs(loss - ref_loss) <= LOSS_TOLERANCE * abs(ref_loss), (loss, ref_loss)
    for name in GRAD_NAMES:
        g = np.asarray(grads[name], dtype=np.float64)
        r = np.asarray(ref[name], dtype=np.float64)
        assert g.shape == r.shape, name
        err = float(np.linalg.norm(g - r)) / max(float(np.linalg.norm(r)), 1e-30)
        assert err < GRAD_TOLERANCE, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("candidate", CANDIDATES)
def test_loss_and_grad(
    benchmark: Any, measure: Any, case_factory: Any, n: int, batch: int, candidate: str
) -> None:
    case = case_factory(n, batch)
    benchmark.group = f"loss_and_grad B={batch} N={n}"
    benchmark.extra_info.update(case.extra_info(candidate, "loss_and_grad"))

    if candidate == "rnnlab":
        net, x, target, s0 = case.net, case.x, case.target, case.s0
        loss, grads = measure(lambda: net.loss_and_grad(x, target, dt=DT, substeps=SUBSTEPS, s0=s0))
        assert grads["s0"].shape == (batch, n)
        assert_agree(loss, grads, *torch_reference(case))
    elif candidate == "torch_autograd":
        torch_loss = measure(torch_step(case), budget_s=2.0)
        torch_grads = _model_grads(case)
        case.cache.setdefault("torch_loss", torch_loss)
        case.cache.setdefault("torch_grads", torch_grads)
        ours = case.net.loss_and_grad(case.x, case.target, dt=DT, substeps=SUBSTEPS, s0=case.s0)
        assert_agree(*ours, torch_loss, torch_grads)
    else:
        torch.manual_seed(0)
        rnn = torch.nn.RNN(N_INPUTS, n, nonlinearity="tanh", batch_first=True)
        head = torch.nn.Linear(n, N_OUTPUTS)
        xt, tt = case.torch_x(), case.torch_target()

        def torch_rnn() -> float:
            rnn.zero_grad(set_to_none=True)
            head.zero_grad(set_to_none=True)
            loss = torch.mean((head(rnn(xt)[0]) - tt) ** 2)
            loss.backward()
            return float(loss.detach())

        loss = measure(torch_rnn, budget_s=2.0)
        assert np.isfinite(loss)
        assert rnn.weight_hh_l0.grad is not None
        assert bool(torch.isfinite(rnn.weight_hh_l0.grad).all())
