"""RNNLayer / ByteLM against an independent numpy transcription of the note's §1.2 equations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.nn import functional

from rnnlab import ConfigError, ShapeError
from rnnlab.gated import ByteLM, RNNLayer
from rnnlab.gated.model import UPSTREAM_FLAGS
from rnnlab.gated.reference import UpstreamStyleByteLM, one_hot

ALL_FLAGS = [
    dict(zip(UPSTREAM_FLAGS, bits, strict=False))
    for bits in itertools.product([False, True], repeat=7)
    if bits[4] or bits[5]  # use_new_state or use_old_state
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def reference_step(
    w: dict[str, np.ndarray],
    flags: dict,
    x: np.ndarray,
    s: np.ndarray,
    *,
    always_swish: bool = False,
    additive_residual: bool = False,
    carried_forget_gate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The note's steps 1-7, one numpy line per equation (batch rows)."""

    def lin(name: str, v: np.ndarray) -> np.ndarray:
        return v @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    if flags["use_input_gate"]:
        u = np.concatenate([x, s], axis=1)
        xt = sigmoid(lin("input_gate_x", u)) * x
        st = sigmoid(lin("input_gate_s", u)) * s
    else:
        xt, st = x, s
    ut = np.concatenate([xt, st], axis=1)
    c = np.tanh(lin("state", ut))
    if carried_forget_gate and flags["use_forget_gate"]:
        f = sigmoid(lin("forget_gate", np.concatenate([ut, c], axis=1)))
        carried = f * s
        if flags["use_state_gate"]:
            g = sigmoid(lin("state_gate", np.concatenate([ut, c], axis=1)))
            n = g * c + (1 - g) * carried
        else:
            n = c + carried
    else:
        n = c
        if flags["use_state_gate"]:
            g = sigmoid(lin("state_gate", np.concatenate([ut, c], axis=1)))
            n = g * c + (1 - g) * s
        if flags["use_forget_gate"]:
            f = sigmoid(lin("forget_gate", np.concatenate([ut, n], axis=1)))
            n = f * n
    parts = []
    if flags["use_new_state"]:
        parts.append(n)
    if flags["use_old_state"]:
        parts.append(st)
    if flags["use_residual"]:
        parts.append(x)
    r = np.concatenate(parts, axis=1)
    o = lin("output", r)
    if flags["use_output_gate"]:
        gate = sigmoid(lin("output_gate", np.concatenate([o, r], axis=1)))
        o = (o * sigmoid(o) if always_swish else o) * gate
    else:
        o = o * sigmoid(o)
    if additive_residual:
        o = o + x
    return o, n


def _numpy_weights(layer: RNNLayer) -> dict[str, np.ndarray]:
    return {k: v.double().numpy() for k, v in layer.upstream_weights().items()}


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=lambda f: "".join(str(int(v)) for v in f.values()))
def test_every_flag_combination_matches_the_equations(flags: dict) -> None:
    torch.manual_seed(0)
    layer = RNNLayer(3, 4, **flags, generator=torch.Generator().manual_seed(1)).double()
    rng = np.random.default_rng(2)
    x, s = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    y, n = layer(torch.from_numpy(x), torch.from_numpy(s))
    y_ref, n_ref = reference_step(_numpy_weights(layer), flags, x, s)
    np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(n.detach().numpy(), n_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "extra",
    [{"always_swish": True}, {"additive_residual": True}, {"carried_forget_gate": True}],
)
@pytest.mark.parametrize("flags", [ALL_FLAGS[-1], ALL_FLAGS[len(ALL_FLAGS) // 2], ALL_FLAGS[7]])
def test_extra_options_match_their_equations(flags: dict, extra: dict) -> None:
    layer = RNNLayer(3, 3, **flags, **extra, generator=torch.Generator().manual_seed(5)).double()
    rng = np.random.default_rng(3)
    x, s = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    y, n = layer(torch.from_numpy(x), torch.from_numpy(s))
    y_ref, n_ref = reference_step(_numpy_weights(layer), flags, x, s, **extra)
    np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(n.detach().numpy(), n_ref, rtol=1e-12, atol=1e-12)


def _constant_weights(layer: RNNLayer, weight: float, bias: float) -> None:
    layer.load_upstream_weights(
        {
            k: torch.full_like(v, weight if k.endswith("weight") else bias, dtype=torch.float64)
            for k, v in layer.upstream_weights().items()
        }
    )


def test_hand_computed_values_on_a_one_unit_layer() -> None:
    # I = S = 1, every weight 0 and every bias b: all gates are σ(b), the candidate tanh(b).
    x, s = torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    sg = 1 / (1 + np.exp(-0.5))  # σ(0.5)
    c = np.tanh(0.5)
    # state gate + forget gate, NS only, swish output: n = σ(b)·(σ(b)c + (1−σ(b))s), o = swish(b)
    layer = RNNLayer(1, 1, use_state_gate=True, use_forget_gate=True).double()
    _constant_weights(layer, 0.0, 0.5)
    y, n = layer(x, s)
    assert n.item() == pytest.approx(sg * (sg * c + (1 - sg) * 1.0), rel=1e-14)
    assert y.item() == pytest.approx(0.5 * sg, rel=1e-14)
    # weights 1, biases 0, NS only, no gates: c = tanh(x + s) = tanh(3); o = swish(tanh 3)
    layer = RNNLayer(1, 1).double()
    _constant_weights(layer, 1.0, 0.0)
    y, n = layer(x, s)
    assert n.item() == pytest.approx(np.tanh(3.0), rel=1e-14)
    assert y.item() == pytest.approx(np.tanh(3.0) / (1 + np.exp(-np.tanh(3.0))), rel=1e-14)
    # OS only + RES + OG, weights 1, biases 0: r = [s; x] = [1, 2], o = 3, gate σ(o + 1 + 2) = σ(6)
    layer = RNNLayer(
        1, 1, use_new_state=False, use_old_state=True, use_residual=True, use_output_gate=True
    ).double()
    _constant_weights(layer, 1.0, 0.0)
    y, _ = layer(x, s)
    assert y.item() == pytest.approx(3.0 / (1 + np.exp(-6.0)), rel=1e-14)
    # IG, weights 1, biases 0, OS only: s̃ = σ(x + s)·s = σ(3); o = swish(σ(3))
    layer = RNNLayer(1, 1, use_input_gate=True, use_new_state=False, use_old_state=True).double()
    _constant_weights(layer, 1.0, 0.0)
    y, _ = layer(x, s)
    st = 1 / (1 + np.exp(-3.0))
    assert y.item() == pytest.approx(st / (1 + np.exp(-st)), rel=1e-14)


def test_parameter_counts_match_upstream() -> None:
    # note §1.2: the README's best config of experiment 01 and the best run of experiment 02
    best01 = ByteLM(
        2, 256, use_forget_gate=True, use_state_gate=True, use_new_state=True, use_residual=True
    )
    assert best01.n_parameters() == 1_444_352
    best02 = ByteLM(
        2,
        512,
        use_input_gate=True,
        use_forget_gate=True,
        use_output_gate=True,
        use_state_gate=True,
        use_new_state=True,
        use_residual=True,
    )
    assert best02.n_parameters() == 9_182_976


@pytest.mark.parametrize("flags", ALL_FLAGS[::7])
def test_byte_lm_matches_the_upstream_structured_model(flags: dict) -> None:
    model = ByteLM(2, 6, seed=3, **flags).double()
    reference = UpstreamStyleByteLM.from_byte_lm(model).double()
    tokens = torch.tensor([0, 65, 255])
    states = [torch.randn(3, 6, dtype=torch.float64) for _ in range(2)]
    logits, new = model(tokens, states)
    ref_logits, ref_new = reference(one_hot(tokens).double(), states)
    torch.testing.assert_close(logits, ref_logits)
    for a, b in zip(new, ref_new, strict=False):
        torch.testing.assert_close(a, b)
    # and the gradients of the loss w.r.t. every weight agree too (same function)
    functional.cross_entropy(logits, tokens).backward()
    functional.cross_entropy(ref_logits, tokens).backward()
    for ours, theirs in zip(model.layers, reference.layers, strict=False):
        state_grad = ours.combined_weight.grad
        if flags["use_new_state"]:
            torch.testing.assert_close(state_grad[:6], theirs.state.weight.grad)
        else:
            assert state_grad is None
            assert theirs.state.weight.grad is None


def test_old_state_only_leaves_the_recurrence_without_gradient() -> None:
    """OS-only (note §1.3): candidate, SG and FG and the IG x-gate get no gradient."""
    model = ByteLM(
        1,
        4,
        use_input_gate=True,
        use_state_gate=True,
        use_forget_gate=True,
        use_new_state=False,
        use_old_state=True,
        seed=0,
    )
    tokens = torch.tensor([1, 2])
    logits, _ = model(tokens, [torch.randn(2, 4)])
    functional.cross_entropy(logits, tokens).backward()
    layer = model.layers[0]
    assert layer.combined_weight.grad is None
    assert layer.state_gate_candidate_weight.grad is None
    assert layer.forget_gate_state_weight.grad is None
    # the IG gates are one fused matrix: the s-gate rows train, the x-gate rows get exactly 0
    grad = layer.input_gates_weight.grad
    assert grad is not None
    assert torch.count_nonzero(grad[:4]) == 0
    assert torch.count_nonzero(grad[4:]) > 0
    # with NS, everything trains
    model = ByteLM(1, 4, use_state_gate=True, use_forget_gate=True, seed=0)
    logits, _ = model(tokens, model.initial_state(2))
    functional.cross_entropy(logits, tokens).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_any_batch_size_and_errors() -> None:
    model = ByteLM(2, 5, use_residual=True, seed=0)
    for batch in (1, 7):
        logits, states = model(torch.zeros(batch, dtype=torch.long), model.initial_state(batch))
        assert logits.shape == (batch, 256)
        assert [s.shape for s in states] == [(batch, 5)] * 2
    with pytest.raises(ConfigError, match="use_new_state, use_old_state"):
        RNNLayer(3, 3, use_new_state=False)
    with pytest.raises(ConfigError, match="use_forget_gate"):
        RNNLayer(3, 3, use_forget_gate=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown flag"):
        ByteLM(1, 4, use_bananas=True)
    with pytest.raises(ShapeError, match="state"):
        model.layers[0](torch.zeros(2, 5), torch.zeros(3, 5))


def test_embedding_width_decoupled_and_gate_bias() -> None:
    model = ByteLM(2, 8, embedding_size=16, gate_bias=1.5, use_forget_gate=True, seed=0)
    logits, states = model(torch.tensor([3]), model.initial_state(1))
    assert logits.shape == (1, 256)
    assert states[0].shape == (1, 8)
    weights = model.layers[0].upstream_weights()
    assert torch.all(weights["forget_gate.bias"] == 1.5)
    assert weights["state.weight"].shape == (8, 24)


def test_seeded_initialisation_is_reproducible_and_upstream_distributed() -> None:
    a, b = ByteLM(1, 64, seed=7), ByteLM(1, 64, seed=7)
    for p, q in zip(a.parameters(), b.parameters(), strict=False):
        assert torch.equal(p, q)
    w = a.layers[0].upstream_weights()["state.weight"]
    bound = 1 / np.sqrt(128)
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.9 * bound
