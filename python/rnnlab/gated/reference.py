"""A straightforward torch model with upstream's structure, for benchmarks and cross-checks.

One ``nn.Linear`` per gate, concatenations as written in the equations, and a one-hot input
multiplied by a Linear(256→S) (reference note §1.1–1.2). It computes the same function as
:class:`rnnlab.gated.ByteLM` (see :meth:`UpstreamStyleByteLM.from_byte_lm`); it exists so the
benchmarks compare our fused model with what a user would write, and so tests have a second,
differently structured implementation to agree with.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.nn import functional

from rnnlab.gated.model import ByteLM, LayerFlags, RNNLayer

__all__ = ["UpstreamStyleByteLM", "UpstreamStyleLayer"]


class UpstreamStyleLayer(nn.Module):
    """The §1.2 equations with one Linear per gate (upstream flags only; S = input width)."""

    def __init__(self, size: int, flags: LayerFlags) -> None:
        super().__init__()
        self.flags = flags
        S = size
        k = int(flags.use_new_state) + int(flags.use_old_state) + int(flags.use_residual)
        self.state = nn.Linear(2 * S, S)
        self.output = nn.Linear(k * S, S)
        if flags.use_input_gate:
            self.input_gate_x = nn.Linear(2 * S, S)
            self.input_gate_s = nn.Linear(2 * S, S)
        if flags.use_state_gate:
            self.state_gate = nn.Linear(3 * S, S)
        if flags.use_forget_gate:
            self.forget_gate = nn.Linear(3 * S, S)
        if flags.use_output_gate:
            self.output_gate = nn.Linear((k + 1) * S, S)

    def forward(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        f = self.flags
        if f.use_input_gate:
            u = torch.cat([x, s], dim=1)
            x_in = torch.sigmoid(self.input_gate_x(u)) * x
            s_in = torch.sigmoid(self.input_gate_s(u)) * s
        else:
            x_in, s_in = x, s
        combined = torch.cat([x_in, s_in], dim=1)
        candidate = torch.tanh(self.state(combined))
        new = candidate
        if f.use_state_gate:
            gate = torch.sigmoid(self.state_gate(torch.cat([combined, candidate], dim=1)))
            new = gate * candidate + (1 - gate) * s
        if f.use_forget_gate:
            new = torch.sigmoid(self.forget_gate(torch.cat([combined, new], dim=1))) * new
        parts = []
        if f.use_new_state:
            parts.append(new)
        if f.use_old_state:
            parts.append(s_in)
        if f.use_residual:
            parts.append(x)
        readout = torch.cat(parts, dim=1)
        out = self.output(readout)
        if f.use_output_gate:
            out = out * torch.sigmoid(self.output_gate(torch.cat([out, readout], dim=1)))
        else:
            out = out * torch.sigmoid(out)
        return out, new


class UpstreamStyleByteLM(nn.Module):
    """One-hot bytes → Linear(256→S) → layers → Linear(S→256), as upstream builds it."""

    def __init__(self, n_layers: int, state_size: int, flags: LayerFlags) -> None:
        super().__init__()
        self.state_size = state_size
        self.input = nn.Linear(256, state_size)
        self.layers = nn.ModuleList(UpstreamStyleLayer(state_size, flags) for _ in range(n_layers))
        self.head = nn.Linear(state_size, 256)

    def initial_state(self, batch_size: int) -> list[Tensor]:
        return [torch.zeros(batch_size, self.state_size) for _ in self.layers]

    def forward(self, one_hot: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        h = self.input(one_hot)
        new_states = []
        for layer, state in zip(self.layers, states, strict=False):
            h, new = layer(h, state)
            new_states.append(new)
        return self.head(h), new_states

    @classmethod
    def from_byte_lm(cls, model: ByteLM) -> UpstreamStyleByteLM:
        """The same network as ``model`` (which must use upstream flags and no extra width)."""
        ref = cls(model.n_layers, model.state_size, model.flags)
        with torch.no_grad():
            ref.input.weight.copy_(model.embedding.t())
            ref.input.bias.copy_(model.embedding_bias)
            for ours, theirs in zip(model.layers, ref.layers, strict=False):
                for key, value in cast(RNNLayer, ours).upstream_weights().items():
                    name, kind = key.split(".")
                    getattr(getattr(theirs, name), kind).copy_(value)
            ref.head.load_state_dict(model.head.state_dict())
        return ref


def one_hot(byte_indices: Tensor) -> Tensor:
    """Float one-hot rows of 256 (what upstream feeds its input Linear)."""
    return functional.one_hot(byte_indices, 256).float()
