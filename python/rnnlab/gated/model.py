"""Gated byte-level RNN layers trained without BPTT (the upstream "SystematicRNNExploration").

Equations of :class:`RNNLayer` (reference note §1.2, in execution order; ``s`` is the state of
the previous step, ``x`` the layer input, ``[a; b]`` concatenation, σ the logistic sigmoid):

1. IG (input gate): ``x̃ = σ(W_ix [x; s] + b_ix) ⊙ x``, ``s̃ = σ(W_is [x; s] + b_is) ⊙ s``;
   without IG ``x̃ = x``, ``s̃ = s``.
2. candidate: ``ũ = [x̃; s̃]``, ``c = tanh(W_c ũ + b_c)``.
3. SG (state gate): ``g = σ(W_g [ũ; c] + b_g)``, ``n = g ⊙ c + (1 − g) ⊙ s`` (the *raw* old
   state); without SG ``n = c``.
4. FG (forget gate): ``f = σ(W_f [ũ; n] + b_f)``, ``n ← f ⊙ n`` (it scales the *whole* new
   state: not an LSTM forget gate).
5. read-out input ``r``: NS only ``n``; OS only ``s̃``; both ``[n; s̃]``; with RES ``r ← [r; x]``
   (a concatenation bypass of the raw input, not an additive residual).
6. output ``o = W_o r + b_o``; with OG ``o ← o ⊙ σ(W_og [o; r] + b_og)`` (gated *linear*, no
   swish); without OG ``o ← o ⊙ σ(o)`` (swish).
7. the new state is ``n``; :meth:`RNNLayer.forward` returns ``(o, n)`` and the caller decides
   whether to detach ``n`` (one-step gradient, the upstream scheme) or not (truncated BPTT).

Implementation: the Linear layers that read the same vector are fused into one matrix (the two
IG gates; the ``ũ`` parts of the candidate, SG and FG; the ``r`` parts of the output and OG), so a
step costs few matrix products. Each block is initialised like the separate ``nn.Linear`` of
upstream (``U(±1/√fan_in)`` with the fan-in of the *unfused* layer), so the model is the same
distribution of networks. :meth:`RNNLayer.upstream_weights` and
:meth:`RNNLayer.load_upstream_weights` convert to and from the per-Linear layout.

Extra options, all off by default so that the upstream grid reproduces (see ``docs/gated.md``):
``always_swish`` (swish also with OG, so the two are independent), ``additive_residual``
(``o ← o + x``), ``carried_forget_gate`` (LSTM style: ``f = σ(W_f [ũ; c] + b_f)`` scales only
the carried state: ``n = g ⊙ c + (1 − g) ⊙ f ⊙ s`` with SG, ``n = c + f ⊙ s`` without) and
``gate_bias`` (initial bias of every gate). :class:`ByteLM` adds ``embedding_size`` (feature width
decoupled from the state width).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
from torch import Tensor, nn

from rnnlab.errors import ConfigError, ShapeError

__all__ = ["UPSTREAM_FLAGS", "ByteLM", "LayerFlags", "RNNLayer"]

UPSTREAM_FLAGS = (
    "use_input_gate",
    "use_forget_gate",
    "use_output_gate",
    "use_state_gate",
    "use_new_state",
    "use_old_state",
    "use_residual",
)
"""The seven boolean flags of upstream, in the order of its grid (IG, FG, OG, SG, NS, OS, RES)."""


@dataclass(frozen=True)
class LayerFlags:
    """The flags of one :class:`RNNLayer` (upstream's seven, then our extra options)."""

    use_input_gate: bool = False
    use_forget_gate: bool = False
    use_output_gate: bool = False
    use_state_gate: bool = False
    use_new_state: bool = True
    use_old_state: bool = False
    use_residual: bool = False
    always_swish: bool = False
    additive_residual: bool = False
    carried_forget_gate: bool = False
    gate_bias: float | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "gate_bias":
                if value is not None and (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                ):
                    raise ConfigError(f"gate_bias: must be None or a finite number, got {value!r}")
            elif not isinstance(value, bool):
                raise ConfigError(f"{item.name}: must be true or false, got {value!r}")
        if not (self.use_new_state or self.use_old_state):
            raise ConfigError(
                "use_new_state, use_old_state: at least one must be true (the read-out needs "
                "the new state, the old state, or both)"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def non_default_extras(self) -> dict[str, Any]:
        """The extra options that differ from their defaults (these enter a config's id)."""
        default = LayerFlags()
        return {
            name: getattr(self, name)
            for name in ("always_swish", "additive_residual", "carried_forget_gate", "gate_bias")
            if getattr(self, name) != getattr(default, name)
        }


def _uniform_(tensor: Tensor, fan_in: int, generator: torch.Generator | None) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


class RNNLayer(nn.Module):
    """One gated recurrent layer; ``y, new_state = layer(x, state)`` with explicit state.

    Shapes: ``x`` ``[B, input_size]``, ``state`` ``[B, state_size]``; returns ``y``
    ``[B, input_size]`` (the output width equals the input width, as upstream) and ``new_state``
    ``[B, state_size]``, still attached to the graph. Any batch size, any device.
    """

    def __init__(
        self,
        input_size: int,
        state_size: int,
        use_input_gate: bool = False,
        use_forget_gate: bool = False,
        use_output_gate: bool = False,
        use_state_gate: bool = False,
        use_new_state: bool = True,
        use_old_state: bool = False,
        use_residual: bool = False,
        *,
        always_swish: bool = False,
        additive_residual: bool = False,
        carried_forget_gate: bool = False,
        gate_bias: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("state_size", state_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
        self.flags = LayerFlags(
            use_input_gate=use_input_gate,
            use_forget_gate=use_forget_gate,
            use_output_gate=use_output_gate,
            use_state_gate=use_state_gate,
            use_new_state=use_new_state,
            use_old_state=use_old_state,
            use_residual=use_residual,
            always_swish=always_swish,
            additive_residual=additive_residual,
            carried_forget_gate=carried_forget_gate,
            gate_bias=gate_bias,
        )
        self.input_size = D = input_size
        self.state_size = S = state_size
        flags = self.flags
        self.readout_size = R = (
            S * int(flags.use_new_state)
            + S * int(flags.use_old_state)
            + D * int(flags.use_residual)
        )
        # Fused blocks. ũ-readers: candidate (S rows), SG's ũ part, FG's ũ part.
        self.n_combined_blocks = 1 + int(flags.use_state_gate) + int(flags.use_forget_gate)
        if flags.use_input_gate:
            self.input_gates_weight = nn.Parameter(torch.empty(D + S, D + S))
            self.input_gates_bias = nn.Parameter(torch.empty(D + S))
        self.combined_weight = nn.Parameter(torch.empty(self.n_combined_blocks * S, D + S))
        self.combined_bias = nn.Parameter(torch.empty(self.n_combined_blocks * S))
        if flags.use_state_gate:
            self.state_gate_candidate_weight = nn.Parameter(torch.empty(S, S))
        if flags.use_forget_gate:
            self.forget_gate_state_weight = nn.Parameter(torch.empty(S, S))
        n_readout_blocks = 1 + int(flags.use_output_gate)
        self.readout_weight = nn.Parameter(torch.empty(n_readout_blocks * D, R))
        self.readout_bias = nn.Parameter(torch.empty(n_readout_blocks * D))
        if flags.use_output_gate:
            self.output_gate_output_weight = nn.Parameter(torch.empty(D, D))
        self.reset_parameters(generator)

    # ----------------------------------------------------------------------------------------
    def upstream_shapes(self) -> dict[str, tuple[int, int]]:
        """``{linear name: (out, in)}`` of the separate Linear layers of upstream's structure."""
        D, S, R, f = self.input_size, self.state_size, self.readout_size, self.flags
        shapes = {"state": (S, D + S), "output": (D, R)}
        if f.use_input_gate:
            shapes["input_gate_x"] = (D, D + S)
            shapes["input_gate_s"] = (S, D + S)
        if f.use_state_gate:
            shapes["state_gate"] = (S, D + 2 * S)
        if f.use_forget_gate:
            shapes["forget_gate"] = (S, D + 2 * S)
        if f.use_output_gate:
            shapes["output_gate"] = (D, D + R)
        return shapes

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every weight and bias from ``U(±1/√fan_in)`` of its upstream Linear layer."""
        upstream: dict[str, Tensor] = {}
        for name, (rows, cols) in self.upstream_shapes().items():
            weight = torch.empty(rows, cols)
            bias = torch.empty(rows)
            _uniform_(weight, cols, generator)
            _uniform_(bias, cols, generator)
            if self.flags.gate_bias is not None and "gate" in name:
                bias.fill_(float(self.flags.gate_bias))
            upstream[f"{name}.weight"] = weight
            upstream[f"{name}.bias"] = bias
        self.load_upstream_weights(upstream)

    def upstream_weights(self) -> dict[str, Tensor]:
        """The parameters as upstream's separate Linear layers (``"state.weight"``, ...)."""
        D, S, f = self.input_size, self.state_size, self.flags
        out: dict[str, Tensor] = {}
        with torch.no_grad():
            if f.use_input_gate:
                w, b = self.input_gates_weight, self.input_gates_bias
                out["input_gate_x.weight"], out["input_gate_x.bias"] = w[:D].clone(), b[:D].clone()
                out["input_gate_s.weight"], out["input_gate_s.bias"] = w[D:].clone(), b[D:].clone()
            cw, cb = self.combined_weight, self.combined_bias
            out["state.weight"], out["state.bias"] = cw[:S].clone(), cb[:S].clone()
            block = 1
            if f.use_state_gate:
                rows = slice(block * S, (block + 1) * S)
                out["state_gate.weight"] = torch.cat(
                    [cw[rows], self.state_gate_candidate_weight], dim=1
                ).clone()
                out["state_gate.bias"] = cb[rows].clone()
                block += 1
            if f.use_forget_gate:
                rows = slice(block * S, (block + 1) * S)
                out["forget_gate.weight"] = torch.cat(
                    [cw[rows], self.forget_gate_state_weight], dim=1
                ).clone()
                out["forget_gate.bias"] = cb[rows].clone()
            rw, rb = self.readout_weight, self.readout_bias
            out["output.weight"], out["output.bias"] = rw[:D].clone(), rb[:D].clone()
            if f.use_output_gate:
                out["output_gate.weight"] = torch.cat(
                    [self.output_gate_output_weight, rw[D:]], dim=1
                ).clone()
                out["output_gate.bias"] = rb[D:].clone()
        return out

    def load_upstream_weights(self, weights: dict[str, Tensor]) -> None:
        """Set the parameters from upstream-layout Linear weights (see :meth:`upstream_shapes`)."""
        D, S, f = self.input_size, self.state_size, self.flags
        expected: dict[str, tuple[int, ...]] = {
            f"{name}.weight": shape for name, shape in self.upstream_shapes().items()
        }
        expected.update({f"{n}.bias": (shape[0],) for n, shape in self.upstream_shapes().items()})
        if set(weights) != set(expected):
            raise ConfigError(
                f"weights: expected the keys {sorted(expected)}, got {sorted(weights)}"
            )
        for key, shape in expected.items():
            if tuple(weights[key].shape) != shape:
                raise ShapeError(
                    f"weights[{key!r}]: expected shape {shape}, got {tuple(weights[key].shape)}"
                )
        w = {k: v.detach().to(self.combined_weight.dtype) for k, v in weights.items()}
        with torch.no_grad():
            if f.use_input_gate:
                self.input_gates_weight.copy_(
                    torch.cat([w["input_gate_x.weight"], w["input_gate_s.weight"]])
                )
                self.input_gates_bias.copy_(
                    torch.cat([w["input_gate_x.bias"], w["input_gate_s.bias"]])
                )
            weight_blocks, bias_blocks = [w["state.weight"]], [w["state.bias"]]
            if f.use_state_gate:
                weight_blocks.append(w["state_gate.weight"][:, : D + S])
                bias_blocks.append(w["state_gate.bias"])
                self.state_gate_candidate_weight.copy_(w["state_gate.weight"][:, D + S :])
            if f.use_forget_gate:
                weight_blocks.append(w["forget_gate.weight"][:, : D + S])
                bias_blocks.append(w["forget_gate.bias"])
                self.forget_gate_state_weight.copy_(w["forget_gate.weight"][:, D + S :])
            self.combined_weight.copy_(torch.cat(weight_blocks))
            self.combined_bias.copy_(torch.cat(bias_blocks))
            readout_w, readout_b = [w["output.weight"]], [w["output.bias"]]
            if f.use_output_gate:
                readout_w.append(w["output_gate.weight"][:, D:])
                readout_b.append(w["output_gate.bias"])
                self.output_gate_output_weight.copy_(w["output_gate.weight"][:, :D])
            self.readout_weight.copy_(torch.cat(readout_w))
            self.readout_bias.copy_(torch.cat(readout_b))

    # ----------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        return torch.zeros(
            batch_size, self.state_size, device=device, dtype=self.combined_weight.dtype
        )

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One step: ``(y, new_state)`` from the input ``x`` and the previous ``state``."""
        D, S, f = self.input_size, self.state_size, self.flags
        if x.dim() != 2 or x.shape[1] != D:
            raise ShapeError(f"x: expected shape [batch, {D}], got {tuple(x.shape)}")
        if state.dim() != 2 or state.shape != (x.shape[0], S):
            raise ShapeError(f"state: expected shape [{x.shape[0]}, {S}], got {tuple(state.shape)}")
        s = state
        # 1. input gating, both gates from the un-gated [x; s]
        u = torch.cat([x, s], dim=1)
        if f.use_input_gate:
            gates = torch.sigmoid(
                torch.addmm(self.input_gates_bias, u, self.input_gates_weight.t())
            )
            u_gated = gates * u  # [x̃; s̃]
            s_gated = u_gated[:, D:]
        else:
            u_gated = u
            s_gated = s
        # 2.-4. candidate, and the ũ parts of SG and FG, in one product
        pre = torch.addmm(self.combined_bias, u_gated, self.combined_weight.t())
        candidate = torch.tanh(pre[:, :S])
        block = 1
        if f.use_forget_gate and f.carried_forget_gate:
            forget_pre = pre[:, (1 + int(f.use_state_gate)) * S : (2 + int(f.use_state_gate)) * S]
            forget = torch.sigmoid(forget_pre + candidate @ self.forget_gate_state_weight.t())
            carried = forget * s
        else:
            carried = s
        if f.use_state_gate:
            gate = torch.sigmoid(
                pre[:, S : 2 * S] + candidate @ self.state_gate_candidate_weight.t()
            )
            new_state = gate * candidate + (1.0 - gate) * carried
            block = 2
        elif f.use_forget_gate and f.carried_forget_gate:
            new_state = candidate + carried
        else:
            new_state = candidate
        if f.use_forget_gate and not f.carried_forget_gate:
            forget = torch.sigmoid(
                pre[:, block * S : (block + 1) * S] + new_state @ self.forget_gate_state_weight.t()
            )
            new_state = forget * new_state
        # 5. read-out input
        parts = []
        if f.use_new_state:
            parts.append(new_state)
        if f.use_old_state:
            parts.append(s_gated)
        if f.use_residual:
            parts.append(x)
        readout = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        # 6. output
        out = torch.addmm(self.readout_bias, readout, self.readout_weight.t())
        if f.use_output_gate:
            output = out[:, :D]
            gate_input = out[:, D:] + output @ self.output_gate_output_weight.t()
            if f.always_swish:
                y = output * torch.sigmoid(output) * torch.sigmoid(gate_input)
            else:
                y = output * torch.sigmoid(gate_input)
        else:
            y = out * torch.sigmoid(out)
        if f.additive_residual:
            y = y + x
        return y, new_state


class ByteLM(nn.Module):
    """Byte language model: embedding lookup → ``n_layers`` :class:`RNNLayer` → 256 logits.

    ``logits, new_states = model(byte_indices, states)`` with ``byte_indices`` ``[B]`` (int64,
    0..255) and ``states`` a list of ``[B, state_size]`` tensors (:meth:`initial_state`).
    The embedding is a table plus a shared bias, the same function as upstream's Linear(256→S)
    applied to a one-hot vector, initialised like it (``U(±1/16)``).
    """

    VOCAB = 256

    def __init__(
        self,
        n_layers: int,
        state_size: int,
        *,
        embedding_size: int | None = None,
        seed: int | None = None,
        **flags: Any,
    ) -> None:
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ConfigError(f"n_layers: must be an integer >= 1, got {n_layers!r}")
        if isinstance(state_size, bool) or not isinstance(state_size, int) or state_size < 1:
            raise ConfigError(f"state_size: must be an integer >= 1, got {state_size!r}")
        width = state_size if embedding_size is None else embedding_size
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"embedding_size: must be None or an integer >= 1, got {width!r}")
        allowed = {item.name for item in fields(LayerFlags)}
        unknown = sorted(set(flags) - allowed)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown flag; allowed: {sorted(allowed)}")
        self.flags = LayerFlags(**flags)
        self.n_layers = n_layers
        self.state_size = state_size
        self.embedding_size = width
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.embedding = nn.Parameter(torch.empty(self.VOCAB, width))
        self.embedding_bias = nn.Parameter(torch.empty(width))
        _uniform_(self.embedding, self.VOCAB, generator)
        _uniform_(self.embedding_bias, self.VOCAB, generator)
        self.layers = nn.ModuleList(
            RNNLayer(width, state_size, **self.flags.as_dict(), generator=generator)
            for _ in range(n_layers)
        )
        self.head = nn.Linear(width, self.VOCAB)
        _uniform_(self.head.weight, width, generator)
        _uniform_(self.head.bias, width, generator)

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> list[Tensor]:
        return [cast(RNNLayer, layer).initial_state(batch_size, device) for layer in self.layers]

    def forward(self, byte_indices: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        if byte_indices.dim() != 1:
            raise ShapeError(
                f"byte_indices: expected shape [batch], got {tuple(byte_indices.shape)}"
            )
        if len(states) != self.n_layers:
            raise ShapeError(f"states: expected {self.n_layers} tensors, got {len(states)}")
        h = self.embedding[byte_indices] + self.embedding_bias
        new_states = []
        for layer, state in zip(self.layers, states, strict=False):
            h, new_state = layer(h, state)
            new_states.append(new_state)
        return self.head(h), new_states

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
