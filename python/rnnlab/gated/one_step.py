"""A closed-form gradient for the one-step scheme (truncation k = 1), without autograd.

With the state detached before every step (reference note §1.3), the loss of one step depends
on the parameters only through that step's forward pass, so its gradient is a short, fixed chain
of matrix products and element-wise factors. :class:`OneStepGradient` runs the forward pass of a
:class:`~rnnlab.gated.model.ByteLM` without recording a graph, keeps the few intermediate values
the chain needs, and writes each parameter's gradient into ``.grad``: the same gradient as
``loss.backward()`` (tested against torch autograd for all 96 upstream flag combinations and the
extra options, float64), at a fraction of the per-operation overhead, and with the products no
parameter needs left out (the old-state columns of the input Jacobian when there is no input
gate; nothing is propagated into the detached state).

Parameters the loss does not reach keep ``.grad = None``, exactly as with autograd (so
:class:`~rnnlab.gated.train.Adam` skips them, and ``untrained_parameters`` is the same): the
recurrence of NS-off layers, the embedding and lower layers below a layer that does not see its
input (:func:`layer_sees_input`). :func:`rnnlab.gated.train.train_run` uses this path whenever
``truncation == 1``; truncated BPTT (k > 1) keeps autograd.

Backward equations (``⊙`` element-wise, ``σ' = σ(1 − σ)``, ``dz`` the gradient of the loss with
respect to ``z``; per layer, from its output back to its input):

* loss ``ℓ = mean_b(logsumexp(z_b) − z_b[t_b])``: ``dz = (softmax(z) − onehot(t)) / B``.
* output, no OG (swish ``y = o σ(o)``): ``do = dy ⊙ σ(o) ⊙ (1 + o (1 − σ(o)))``; with OG
  (``y = o ⊙ a``, ``a = σ(q)``, ``q = W_og,r r + W_og,o o + b``): ``dq = dy ⊙ o ⊙ σ'(q)``,
  ``do = dy ⊙ a + dq W_og,o``; ``always_swish`` replaces ``o`` by ``o σ(o)`` in ``y``.
* read-out: ``dW_r = [do; dq]ᵀ r``, ``dr = [do; dq] W_r``, split into ``dn``, ``ds̃``, ``dx``.
* FG (whole new state, ``n = f ⊙ n₁``): ``dn₁ = dn ⊙ f + dp_f W_f,n`` with
  ``dp_f = dn ⊙ n₁ ⊙ σ'(p_f)``.
* SG (``n₁ = g ⊙ c + (1 − g) ⊙ k``, ``k`` the carried state): ``dp_g = dn₁ ⊙ (c − k) ⊙ σ'(p_g)``,
  ``dc = dn₁ ⊙ g + dp_g W_g,c``, ``dk = dn₁ ⊙ (1 − g)``; carried FG (``k = f ⊙ s``):
  ``dp_f = dk ⊙ s ⊙ σ'(p_f)``, ``dc += dp_f W_f,c``.
* candidate: ``dp_c = dc ⊙ (1 − c²)``; ``dW_comb = [dp_c; dp_g; dp_f]ᵀ ũ``, ``dũ = [...] W_comb``.
* IG (``ũ = a_u ⊙ u``): ``dp_u = dũ ⊙ u ⊙ σ'(p_u)``, ``dx = dũ_x ⊙ a_x + dp_u W_u,x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from rnnlab.errors import ShapeError
from rnnlab.gated.model import ByteLM, LayerFlags, RNNLayer

__all__ = [
    "OneStepGradient",
    "cross_entropy_with_gradient",
    "layer_sees_input",
    "trained_parameter_names",
]


def layer_sees_input(flags: LayerFlags) -> bool:
    """Whether a layer's output depends on its current input ``x`` (within one step).

    It does through the candidate (NS), the bypass (RES), the additive residual, or the
    input-gated old state (OS with IG); an OS-only layer without IG and RES reads only the
    previous state.
    """
    return (
        flags.use_new_state
        or flags.use_residual
        or flags.additive_residual
        or (flags.use_old_state and flags.use_input_gate)
    )


def _layer_trained_names(flags: LayerFlags) -> list[str]:
    """The parameters of one layer that the loss reaches (given that the layer's output does)."""
    names = []
    if flags.use_input_gate:
        names += ["input_gates_weight", "input_gates_bias"]
    if flags.use_new_state:
        names += ["combined_weight", "combined_bias"]
        if flags.use_state_gate:
            names.append("state_gate_candidate_weight")
        if flags.use_forget_gate:
            names.append("forget_gate_state_weight")
    names += ["readout_weight", "readout_bias"]
    if flags.use_output_gate:
        names.append("output_gate_output_weight")
    return names


def trained_parameter_names(model: ByteLM) -> set[str]:
    """Names of the parameters that get a gradient from one training step (not ``None``)."""
    names = {"head.weight", "head.bias"}
    reaches = True  # whether the output of the layer being looked at reaches the loss
    for index in reversed(range(model.n_layers)):
        if not reaches:
            break
        layer = cast(RNNLayer, model.layers[index])
        names.update(f"layers.{index}.{name}" for name in _layer_trained_names(layer.flags))
        reaches = layer_sees_input(layer.flags)
    if reaches:
        names.update({"embedding", "embedding_bias"})
    return names


def cross_entropy_with_gradient(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of each row and the gradient of their batch mean, in one softmax pass.

    ``logits`` ``[..., B, V]``, ``targets`` ``[..., B]`` (class indices): returns the losses
    ``[..., B]`` (``logsumexp(z) − z[t]``, shifted by the row maximum as ``log_softmax`` is) and
    ``(softmax(z) − onehot(t)) / B``, the gradient of the mean over ``B`` (the logits' buffer
    is not modified).
    """
    batch = logits.shape[-2]
    target_index = targets.unsqueeze(-1)
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    target_shifted = shifted.gather(-1, target_index)
    probabilities = shifted.exp_()
    total = probabilities.sum(dim=-1, keepdim=True)
    row_losses = total.log().sub_(target_shifted).squeeze(-1)
    probabilities.mul_(total.reciprocal_().div_(batch))
    probabilities.scatter_add_(
        -1, target_index, torch.full_like(target_shifted, -1.0 / batch, dtype=logits.dtype)
    )
    return row_losses, probabilities


def _sigmoid_slope(value: Tensor) -> Tensor:
    """``σ'`` from ``σ``: ``σ − σ²`` (one operation)."""
    return torch.addcmul(value, value, value, value=-1.0)


def _swish_slope(output: Tensor, output_sigmoid: Tensor) -> Tensor:
    """``d(o σ(o))/do = σ(o) + o σ'(o)``."""
    return torch.addcmul(output_sigmoid, output, _sigmoid_slope(output_sigmoid))


@dataclass
class _LayerTape:
    """The forward values one layer's gradient needs."""

    x: Tensor
    s: Tensor
    u: Tensor  # [x; s]
    input_gates: Tensor | None
    u_gated: Tensor  # ũ = [x̃; s̃]
    candidate: Tensor
    state_gate: Tensor | None
    gate_difference: Tensor | None  # c − k (with SG)
    forget_gate: Tensor | None
    carried: Tensor  # k: s, or f ⊙ s with the carried forget gate
    before_forget: Tensor  # n₁ (the state before the whole-state forget gate)
    new_state: Tensor
    readout: Tensor
    output: Tensor  # o (the output part of the read-out product)
    output_sigmoid: Tensor | None  # σ(o), for swish
    output_gate: Tensor | None


class OneStepGradient:
    """Forward, loss and closed-form gradient of one k = 1 training step of a :class:`ByteLM`.

    ``loss, new_states = step(inputs, targets, states)`` with ``inputs``/``targets`` ``[B]``
    byte indices and ``states`` the (detached) states: sets ``.grad`` of every parameter the
    loss reaches (others get ``None``) and returns the mean cross-entropy (a 0-dim tensor) and
    the new states (no graph). Then call the optimiser's ``step``.
    """

    def __init__(self, model: ByteLM) -> None:
        self.model = model
        self.layers = [cast(RNNLayer, layer) for layer in model.layers]
        self.trained = trained_parameter_names(model)
        # a layer propagates a gradient to its input only if something below it is trained
        self.need_input_gradient = [
            "embedding" in self.trained
            or any(f"layers.{below}.readout_weight" in self.trained for below in range(index))
            for index in range(model.n_layers)
        ]
        self.named = dict(model.named_parameters())

    @torch.no_grad()
    def __call__(
        self, inputs: Tensor, targets: Tensor, states: list[Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        model = self.model
        if inputs.dim() != 1 or targets.shape != inputs.shape:
            raise ShapeError(
                f"inputs, targets: expected two [batch] tensors, got {tuple(inputs.shape)} "
                f"and {tuple(targets.shape)}"
            )
        if len(states) != model.n_layers:
            raise ShapeError(f"states: expected {model.n_layers} tensors, got {len(states)}")
        grads: dict[str, Tensor] = {}
        h = model.embedding[inputs] + model.embedding_bias
        tapes = []
        new_states = []
        for layer, state in zip(self.layers, states, strict=True):
            tape = self._forward_layer(layer, h, state)
            tapes.append(tape)
            new_states.append(tape.new_state)
            h = self._layer_output(layer, tape)
        head = model.head
        logits = torch.addmm(head.bias, h, head.weight.t())
        row_losses, d_logits = cross_entropy_with_gradient(logits, targets)
        loss = row_losses.mean()
        grads["head.weight"] = d_logits.t().mm(h)
        grads["head.bias"] = d_logits.sum(0)
        d_h: Tensor | None = d_logits.mm(head.weight)
        for index in reversed(range(model.n_layers)):
            if d_h is None:
                break
            d_h = self._backward_layer(
                index, self.layers[index], tapes[index], d_h, grads, self.need_input_gradient[index]
            )
        if d_h is not None and "embedding" in self.trained:
            grads["embedding"] = torch.zeros_like(model.embedding).index_add_(0, inputs, d_h)
            grads["embedding_bias"] = d_h.sum(0)
        for name, parameter in self.named.items():
            parameter.grad = grads.get(name)
        return loss, new_states

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _forward_layer(layer: RNNLayer, x: Tensor, s: Tensor) -> _LayerTape:
        D, S, f = layer.input_size, layer.state_size, layer.flags
        u = torch.cat([x, s], dim=1)
        input_gates = None
        if f.use_input_gate:
            input_gates = torch.addmm(layer.input_gates_bias, u, layer.input_gates_weight.t())
            input_gates.sigmoid_()
            u_gated = input_gates * u
        else:
            u_gated = u
        pre = torch.addmm(layer.combined_bias, u_gated, layer.combined_weight.t())
        candidate = torch.tanh(pre[:, :S])
        carried = s
        forget_gate = state_gate = gate_difference = None
        forget_block = (1 + int(f.use_state_gate)) * S
        if f.use_forget_gate and f.carried_forget_gate:
            forget_gate = torch.addmm(
                pre[:, forget_block : forget_block + S],
                candidate,
                layer.forget_gate_state_weight.t(),
            ).sigmoid_()
            carried = forget_gate * s
        if f.use_state_gate:
            state_gate = torch.addmm(
                pre[:, S : 2 * S], candidate, layer.state_gate_candidate_weight.t()
            ).sigmoid_()
            gate_difference = candidate - carried
            before_forget = torch.addcmul(carried, state_gate, gate_difference)
        elif f.use_forget_gate and f.carried_forget_gate:
            before_forget = candidate + carried
        else:
            before_forget = candidate
        new_state = before_forget
        if f.use_forget_gate and not f.carried_forget_gate:
            forget_gate = torch.addmm(
                pre[:, forget_block : forget_block + S],
                before_forget,
                layer.forget_gate_state_weight.t(),
            ).sigmoid_()
            new_state = forget_gate * before_forget
        parts = []
        if f.use_new_state:
            parts.append(new_state)
        if f.use_old_state:
            parts.append(u_gated[:, D:])
        if f.use_residual:
            parts.append(x)
        readout = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = torch.addmm(layer.readout_bias, readout, layer.readout_weight.t())
        output_gate = None
        if f.use_output_gate:
            output = out[:, :D]
            output_gate = torch.addmm(
                out[:, D:], output, layer.output_gate_output_weight.t()
            ).sigmoid_()
            output_sigmoid = torch.sigmoid(output) if f.always_swish else None
        else:
            output = out
            output_sigmoid = torch.sigmoid(output)
        return _LayerTape(
            x=x,
            s=s,
            u=u,
            input_gates=input_gates,
            u_gated=u_gated,
            candidate=candidate,
            state_gate=state_gate,
            gate_difference=gate_difference,
            forget_gate=forget_gate,
            carried=carried,
            before_forget=before_forget,
            new_state=new_state,
            readout=readout,
            output=output,
            output_sigmoid=output_sigmoid,
            output_gate=output_gate,
        )

    @staticmethod
    def _layer_output(layer: RNNLayer, tape: _LayerTape) -> Tensor:
        f = layer.flags
        y = tape.output
        if tape.output_sigmoid is not None:
            y = y * tape.output_sigmoid
        if tape.output_gate is not None:
            y = y * tape.output_gate
        if f.additive_residual:
            y = y + tape.x
        return y

    def _backward_layer(
        self,
        index: int,
        layer: RNNLayer,
        tape: _LayerTape,
        d_y: Tensor,
        grads: dict[str, Tensor],
        need_input_gradient: bool,
    ) -> Tensor | None:
        """Write this layer's parameter gradients into ``grads``; return ``dx`` (or ``None``)."""
        D, S, f = layer.input_size, layer.state_size, layer.flags
        prefix = f"layers.{index}."
        o = tape.output
        # --- output nonlinearity
        if tape.output_gate is not None:
            a = tape.output_gate
            if tape.output_sigmoid is not None:  # always_swish: y = o σ(o) a
                so = tape.output_sigmoid
                d_gate_pre = torch.mul(d_y, o).mul_(so).mul_(_sigmoid_slope(a))
                d_o = torch.mul(d_y, a).mul_(_swish_slope(o, so))
            else:
                d_gate_pre = torch.mul(d_y, o).mul_(_sigmoid_slope(a))
                d_o = d_y * a
            grads[prefix + "output_gate_output_weight"] = d_gate_pre.t().mm(o)
            d_o.addmm_(d_gate_pre, layer.output_gate_output_weight)
            d_out = torch.cat([d_o, d_gate_pre], dim=1)
        else:
            so = cast(Tensor, tape.output_sigmoid)
            d_out = _swish_slope(o, so).mul_(d_y)
        grads[prefix + "readout_weight"] = d_out.t().mm(tape.readout)
        grads[prefix + "readout_bias"] = d_out.sum(0)
        needs_readout_gradient = (
            f.use_new_state
            or (f.use_old_state and f.use_input_gate)
            or (f.use_residual and need_input_gradient)
        )
        d_readout = d_out.mm(layer.readout_weight) if needs_readout_gradient else None
        column = 0
        d_new = d_old = d_bypass = None
        if f.use_new_state:
            d_new = cast(Tensor, d_readout)[:, :S]
            column = S
        if f.use_old_state:
            if d_readout is not None:
                d_old = d_readout[:, column : column + S]
            column += S
        if f.use_residual and need_input_gradient:
            d_bypass = cast(Tensor, d_readout)[:, column : column + D]

        # --- new-state chain (only NS layers train the recurrence)
        d_pre = None
        if d_new is not None:
            c = tape.candidate
            # the gradient of the combined product's output, written block by block
            n_blocks = 1 + int(f.use_state_gate) + int(f.use_forget_gate)
            d_pre = torch.empty(d_new.shape[0], n_blocks * S, dtype=c.dtype, device=c.device)
            forget_cols = slice((1 + int(f.use_state_gate)) * S, (2 + int(f.use_state_gate)) * S)
            d_before_forget = d_new
            if f.use_forget_gate and not f.carried_forget_gate:
                fg = cast(Tensor, tape.forget_gate)
                d_forget_pre = torch.mul(d_new, tape.before_forget, out=d_pre[:, forget_cols])
                d_forget_pre.mul_(_sigmoid_slope(fg))
                grads[prefix + "forget_gate_state_weight"] = d_forget_pre.t().mm(tape.before_forget)
                d_before_forget = torch.addmm(
                    d_new * fg, d_forget_pre, layer.forget_gate_state_weight
                )
            d_carried = None
            if f.use_state_gate:
                g = cast(Tensor, tape.state_gate)
                d_state_pre = torch.mul(
                    d_before_forget, cast(Tensor, tape.gate_difference), out=d_pre[:, S : 2 * S]
                )
                d_state_pre.mul_(_sigmoid_slope(g))
                grads[prefix + "state_gate_candidate_weight"] = d_state_pre.t().mm(c)
                d_candidate = torch.addmm(
                    d_before_forget * g, d_state_pre, layer.state_gate_candidate_weight
                )
                if f.use_forget_gate and f.carried_forget_gate:
                    d_carried = torch.addcmul(d_before_forget, d_before_forget, g, value=-1.0)
            else:
                d_candidate = d_before_forget
                if f.use_forget_gate and f.carried_forget_gate:
                    d_carried = d_before_forget
            if d_carried is not None:
                fg = cast(Tensor, tape.forget_gate)
                d_forget_pre = torch.mul(d_carried, tape.s, out=d_pre[:, forget_cols])
                d_forget_pre.mul_(_sigmoid_slope(fg))
                grads[prefix + "forget_gate_state_weight"] = d_forget_pre.t().mm(c)
                d_candidate = torch.addmm(d_candidate, d_forget_pre, layer.forget_gate_state_weight)
            # tanh: d_candidate (1 − c²) = d_candidate − (d_candidate c) c
            torch.addcmul(d_candidate, d_candidate * c, c, value=-1.0, out=d_pre[:, :S])
            grads[prefix + "combined_weight"] = d_pre.t().mm(tape.u_gated)
            grads[prefix + "combined_bias"] = d_pre.sum(0)

        # --- input gates and the input gradient
        d_x: Tensor | None = None
        if f.use_input_gate:
            gates = cast(Tensor, tape.input_gates)
            if d_pre is not None:
                d_u_gated = d_pre.mm(layer.combined_weight)
                if d_old is not None:
                    d_u_gated[:, D:] += d_old
            else:
                d_u_gated = torch.cat([torch.zeros_like(tape.x), cast(Tensor, d_old)], dim=1)
            d_gates_pre = torch.mul(d_u_gated, tape.u).mul_(_sigmoid_slope(gates))
            grads[prefix + "input_gates_weight"] = d_gates_pre.t().mm(tape.u)
            grads[prefix + "input_gates_bias"] = d_gates_pre.sum(0)
            if need_input_gradient:
                d_x = torch.addmm(
                    d_u_gated[:, :D] * gates[:, :D],
                    d_gates_pre,
                    layer.input_gates_weight[:, :D],
                )
        elif need_input_gradient and d_pre is not None:
            d_x = d_pre.mm(layer.combined_weight[:, :D])
        if not need_input_gradient:
            return None
        for extra in (d_bypass, d_y if f.additive_residual else None):
            if extra is not None:
                d_x = extra.clone() if d_x is None else d_x.add_(extra)
        return d_x
