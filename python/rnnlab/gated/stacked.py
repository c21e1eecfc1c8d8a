"""Many same-shape configurations trained together in one process (batched matrix products).

Small models (state size ≤ 64) leave a CPU or GPU mostly idle: each step is a handful of tiny
matrix products dominated by per-operation overhead. :class:`StackedByteLM` holds G models with
the same ``n_layers`` and ``state_size`` but *any* upstream flags as stacked parameters
(``[G, ...]``) and runs one ``bmm`` where each model would run one ``mm``. Flags become 0/1 masks:
every configuration is the superset layer of the group (the gates and read-out parts that at
least one stacked model uses; parts no model uses are not built) with its absent parts
multiplied by 0, so their parameters get exactly zero gradient and Adam leaves
them unchanged (zero gradient and zero moments give a zero update). Each model's loss is its
own batch mean and the parameters are disjoint, so the gradient of the summed loss is each
model's own gradient: the stacked run computes the same training as separate runs, up to
floating-point rounding (tested against :func:`rnnlab.gated.train.train_run`).

Each configuration keeps its own seed: initial weights come from its own :class:`ByteLM`, and
its windows from its own data RNG. With run folders, each member checkpoints and resumes like a
single run, in the same files and format (:func:`train_stacked`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional

from rnnlab.errors import ConfigError
from rnnlab.gated.data import load_corpus, sample_windows, split_bytes
from rnnlab.gated.model import ByteLM
from rnnlab.gated.one_step import cross_entropy_with_gradient
from rnnlab.gated.train import (
    Adam,
    TrainConfig,
    build_model,
    load_checkpoint,
    parameters_without_gradient,
    resolve_device,
    save_checkpoint_tensors,
)

__all__ = ["StackedByteLM", "StackedOneStepGradient", "stack_key", "train_stacked"]

_MASKS = (
    "use_input_gate",
    "use_state_gate",
    "use_forget_gate",
    "use_output_gate",
    "use_new_state",
    "use_old_state",
    "use_residual",
)


def stack_key(arch: dict[str, Any]) -> tuple[int, int, int] | None:
    """Configs with equal keys can be stacked; ``None`` if the config cannot be (extra options)."""
    extras = {"always_swish", "additive_residual", "carried_forget_gate", "gate_bias"}
    if extras & set(arch):
        return None
    return (arch["n_layers"], arch["state_size"], arch.get("embedding_size") or arch["state_size"])


@dataclass(frozen=True)
class _Region:
    """A region of a tensor: ``tensor[index]``, then transposed if ``transposed``."""

    index: tuple[int | slice, ...] = ()
    transposed: bool = False

    def of(self, tensor: Tensor) -> Tensor:
        view = tensor[self.index] if self.index else tensor
        return view.t() if self.transposed else view


class _StackedLayer(nn.Module):
    """One stacked layer's parameters (those no stacked model uses are not created)."""

    input_gates_weight: nn.Parameter
    input_gates_bias: nn.Parameter
    combined_weight: nn.Parameter
    combined_bias: nn.Parameter
    state_gate_candidate: nn.Parameter
    forget_gate_state: nn.Parameter
    readout_weight: nn.Parameter
    readout_bias: nn.Parameter
    output_gate_output: nn.Parameter


class StackedByteLM(nn.Module):
    """G :class:`ByteLM` s of one shape as stacked parameters; ``forward`` takes ``[G, B]``."""

    def __init__(self, models: list[ByteLM]) -> None:
        super().__init__()
        if not models:
            raise ConfigError("models: need at least one model to stack")
        first = models[0]
        L, S, E = first.n_layers, first.state_size, first.embedding_size
        for model in models:
            if (model.n_layers, model.state_size, model.embedding_size) != (L, S, E):
                raise ConfigError(
                    "models: all stacked models need the same n_layers, "
                    "state_size and embedding_size"
                )
            if model.flags.non_default_extras():
                raise ConfigError("models: extra options (always_swish, ...) cannot be stacked")
        G = len(models)
        self.G, self.n_layers, self.state_size, self.embedding_size = G, L, S, E
        self.member_flags = [model.flags for model in models]
        self._link_cache: dict[int, list[tuple[str, _Region, str, _Region]]] = {}
        self.member_shapes = [
            {name: tuple(t.shape) for name, t in model.state_dict().items()} for model in models
        ]
        masks = torch.tensor(
            [[float(getattr(m.flags, name)) for name in _MASKS] for m in models]
        )  # [G, 7]
        self.register_buffer("masks", masks.view(G, 1, 1, len(_MASKS)))
        # per flag: used by none, some or all of the stacked models (skip work accordingly)
        self.flag_use = {
            name: ("none" if not column.any() else "all" if column.all() else "some")
            for name, column in zip(_MASKS, masks.bool().t(), strict=True)
        }
        dtype = first.embedding.dtype

        def zeros(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(G, *shape, dtype=dtype))

        use = self.flag_use
        self.has_ig = use["use_input_gate"] != "none"
        self.has_sg = use["use_state_gate"] != "none"
        self.has_fg = use["use_forget_gate"] != "none"
        self.has_og = use["use_output_gate"] != "none"
        # column blocks of the combined matrix (candidate, then SG and FG if any model uses them)
        self.sg_block = 1  # used only when has_sg
        self.fg_block = 1 + int(self.has_sg)  # used only when has_fg
        n_blocks = 1 + int(self.has_sg) + int(self.has_fg)
        # read-out rows: the parts (n, s̃, x) that some model uses, in that order
        self.readout_parts = [
            (name, width)
            for name, flag, width in (
                ("new", "use_new_state", S),
                ("old", "use_old_state", S),
                ("input", "use_residual", E),
            )
            if use[flag] != "none"
        ]
        readout_rows = sum(width for _, width in self.readout_parts)
        readout_cols = E * (1 + int(self.has_og))

        self.embedding = zeros(256, E)
        self.embedding_bias = zeros(1, E)
        self.head_weight = zeros(E, 256)
        self.head_bias = zeros(1, 256)
        self.layers = nn.ModuleList()
        for _ in range(L):
            layer = _StackedLayer()
            if self.has_ig:
                layer.input_gates_weight = zeros(E + S, E + S)
                layer.input_gates_bias = zeros(1, E + S)
            layer.combined_weight = zeros(E + S, n_blocks * S)
            layer.combined_bias = zeros(1, n_blocks * S)
            if self.has_sg:
                layer.state_gate_candidate = zeros(S, S)
            if self.has_fg:
                layer.forget_gate_state = zeros(S, S)
            layer.readout_weight = zeros(readout_rows, readout_cols)
            layer.readout_bias = zeros(1, readout_cols)
            if self.has_og:
                layer.output_gate_output = zeros(E, E)
            self.layers.append(layer)
        with torch.no_grad():
            for g, model in enumerate(models):
                self._place(g, model)

    def _links(self, g: int) -> list[tuple[str, _Region, str, _Region]]:
        """How member ``g``'s :class:`ByteLM` tensors sit in the stacked ones.

        Each link ``(single name, single region, stacked name, stacked region)`` pairs a region
        of a single-model tensor (its ``state_dict`` layout) with the region of the stacked
        tensor that holds it, both seen in the same orientation; parts the member does not use
        are not linked (they stay zero in the stack).
        """
        if g in self._link_cache:
            return self._link_cache[g]
        S, E = self.state_size, self.embedding_size
        f = self.member_flags[g]
        whole = _Region()
        links: list[tuple[str, _Region, str, _Region]] = [
            ("embedding", whole, "embedding", _Region((g,))),
            ("embedding_bias", whole, "embedding_bias", _Region((g, 0))),
            ("head.weight", whole, "head_weight", _Region((g,), transposed=True)),
            ("head.bias", whole, "head_bias", _Region((g, 0))),
        ]
        # the member's read-out columns (its own parts, in order) and their stacked rows
        uses = {"new": f.use_new_state, "old": f.use_old_state, "input": f.use_residual}
        readout_blocks = []
        column = row = 0
        for name, width in self.readout_parts:
            if uses[name]:
                readout_blocks.append((column, row, width))
                column += width
            row += width
        out_rows = slice(0, E * (1 + int(f.use_output_gate)))
        gate_blocks = [0]
        if f.use_state_gate:
            gate_blocks.append(self.sg_block)
        if f.use_forget_gate:
            gate_blocks.append(self.fg_block)
        for index in range(self.n_layers):
            p = f"layers.{index}."
            pairs: list[tuple[str, _Region, str, _Region]] = []
            if f.use_input_gate:
                pairs.append(
                    ("input_gates_weight", whole, "input_gates_weight", _Region((g,), True))
                )
                pairs.append(("input_gates_bias", whole, "input_gates_bias", _Region((g, 0))))
            for own, block in enumerate(gate_blocks):
                rows = slice(own * S, (own + 1) * S)
                cols = slice(block * S, (block + 1) * S)
                pairs.append(
                    (
                        "combined_weight",
                        _Region((rows,)),
                        "combined_weight",
                        _Region((g, slice(None), cols), transposed=True),
                    )
                )
                pairs.append(
                    ("combined_bias", _Region((rows,)), "combined_bias", _Region((g, 0, cols)))
                )
            if f.use_state_gate:
                pairs.append(
                    (
                        "state_gate_candidate_weight",
                        whole,
                        "state_gate_candidate",
                        _Region((g,), transposed=True),
                    )
                )
            if f.use_forget_gate:
                pairs.append(
                    (
                        "forget_gate_state_weight",
                        whole,
                        "forget_gate_state",
                        _Region((g,), transposed=True),
                    )
                )
            for column, row, width in readout_blocks:
                pairs.append(
                    (
                        "readout_weight",
                        _Region((slice(None), slice(column, column + width))),
                        "readout_weight",
                        _Region((g, slice(row, row + width), out_rows), transposed=True),
                    )
                )
            pairs.append(("readout_bias", whole, "readout_bias", _Region((g, 0, out_rows))))
            if f.use_output_gate:
                pairs.append(
                    (
                        "output_gate_output_weight",
                        whole,
                        "output_gate_output",
                        _Region((g,), transposed=True),
                    )
                )
            links += [(p + a, ra, p + b, rb) for a, ra, b, rb in pairs]
        self._link_cache[g] = links
        return links

    def stack_tensors(self, g: int, tensors: dict[str, Tensor], into: dict[str, Tensor]) -> None:
        """Copy member ``g``'s single-layout ``tensors`` (parameters, or Adam moments of the
        same shapes) into the stacked tensors ``into`` (keyed by stacked parameter name); names
        missing from ``tensors`` are left as they are."""
        with torch.no_grad():
            for name, single_region, stacked_name, stacked_region in self._links(g):
                if name in tensors:
                    stacked_region.of(into[stacked_name]).copy_(single_region.of(tensors[name]))

    def unstack_tensors(
        self, g: int, stacked: dict[str, Tensor], names: set[str] | None = None
    ) -> dict[str, Tensor]:
        """Member ``g``'s tensors in its :class:`ByteLM` ``state_dict`` layout, taken from
        ``stacked`` (parameters or moments; ``names`` limits which single names are built)."""
        out: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, single_region, stacked_name, stacked_region in self._links(g):
                if names is not None and name not in names:
                    continue
                if name not in out:
                    out[name] = torch.zeros(
                        self.member_shapes[g][name],
                        dtype=stacked[stacked_name].dtype,
                        device=stacked[stacked_name].device,
                    )
                single_region.of(out[name]).copy_(stacked_region.of(stacked[stacked_name]))
        return out

    def _place(self, g: int, model: ByteLM) -> None:
        self.stack_tensors(g, dict(model.state_dict()), dict(self.named_parameters()))

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> list[Tensor]:
        return [
            torch.zeros(
                self.G, batch_size, self.state_size, device=device, dtype=self.embedding.dtype
            )
            for _ in range(self.n_layers)
        ]

    def forward(self, byte_indices: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``byte_indices`` ``[G, B]`` → logits ``[G, B, 256]`` and the new states."""
        S, E = self.state_size, self.embedding_size
        m = cast(Tensor, self.masks)
        ig, sg, fg, og, ns, os_, res = (m[..., i] for i in range(len(_MASKS)))  # [G, 1, 1]
        rows = torch.arange(self.G, device=byte_indices.device)[:, None]
        h = self.embedding[rows, byte_indices] + self.embedding_bias
        new_states = []
        use = self.flag_use

        def blend(mask: Tensor, name: str, on: Tensor, off: Tensor) -> Tensor:
            # the flag's value per model: skip the masking when all or none use it
            if use[name] == "all":
                return on
            if use[name] == "none":
                return off
            return mask * on + (1 - mask) * off

        for module, s in zip(self.layers, states, strict=True):
            layer = cast(_StackedLayer, module)
            u = torch.cat([h, s], dim=2)
            if self.has_ig:
                gates = torch.sigmoid(
                    torch.baddbmm(layer.input_gates_bias, u, layer.input_gates_weight)
                )
                u_gated = blend(ig, "use_input_gate", gates * u, u)
            else:
                u_gated = u
            s_gated = u_gated[..., E:]
            pre = torch.baddbmm(layer.combined_bias, u_gated, layer.combined_weight)
            c = torch.tanh(pre[..., :S])
            n = c
            if self.has_sg:
                block = self.sg_block * S
                g = torch.sigmoid(
                    pre[..., block : block + S] + torch.bmm(c, layer.state_gate_candidate)
                )
                n = blend(sg, "use_state_gate", g * c + (1 - g) * s, c)
            if self.has_fg:
                block = self.fg_block * S
                f = torch.sigmoid(
                    pre[..., block : block + S] + torch.bmm(n, layer.forget_gate_state)
                )
                n = blend(fg, "use_forget_gate", f * n, n)
            values = {
                "new": (n, ns, "use_new_state"),
                "old": (s_gated, os_, "use_old_state"),
                "input": (h, res, "use_residual"),
            }
            parts = []
            for name, _ in self.readout_parts:
                value, mask, flag = values[name]
                parts.append(value if use[flag] == "all" else mask * value)
            r = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
            if not self.has_og:
                o = torch.baddbmm(layer.readout_bias, r, layer.readout_weight)
                h = o * torch.sigmoid(o)
            else:
                out = torch.baddbmm(layer.readout_bias, r, layer.readout_weight)
                o = out[..., :E]
                gate = torch.sigmoid(out[..., E:] + torch.bmm(o, layer.output_gate_output))
                h = blend(og, "use_output_gate", o * gate, o * torch.sigmoid(o))
            new_states.append(n)
        return torch.baddbmm(self.head_bias, h, self.head_weight), new_states


def _slope(value: Tensor) -> Tensor:
    """``σ'`` from ``σ``: ``σ − σ²`` (one operation)."""
    return torch.addcmul(value, value, value, value=-1.0)


def _swish_slope(output: Tensor, output_sigmoid: Tensor) -> Tensor:
    """d(o σ(o))/do = σ(o) + o σ'(o)."""
    return torch.addcmul(output_sigmoid, output, _slope(output_sigmoid))


def _transposed(tensor: Tensor) -> Tensor:
    return tensor.transpose(1, 2)


class StackedOneStepGradient:
    """The closed-form k = 1 gradient (:mod:`rnnlab.gated.one_step`) for a :class:`StackedByteLM`.

    ``losses, new_states = step(inputs, targets, states)`` with ``[G, B]`` byte indices: sets
    ``.grad`` of the stacked parameters to the gradient of the summed per-model mean losses
    (each model's own gradient, in its slice) and returns the ``[G]`` losses and the new states.
    The flag masks enter as in :meth:`StackedByteLM.forward` (a blend ``m·on + (1 − m)·off``
    passes ``m·d`` to ``on`` and ``(1 − m)·d`` to ``off``), so parts a member does not use get
    exactly zero gradient. Tested against autograd through :meth:`StackedByteLM.forward`.
    """

    def __init__(self, model: StackedByteLM) -> None:
        self.model = model
        self.named = dict(model.named_parameters())
        masks = cast(Tensor, model.masks)
        self.mask = {name: masks[..., i] for i, name in enumerate(_MASKS)}  # [G, 1, 1] each
        self.use = model.flag_use

    def _blend(self, flag: str, on: Tensor, off: Tensor) -> Tensor:
        use = self.use[flag]
        if use == "all":
            return on
        if use == "none":
            return off
        mask = self.mask[flag]
        return mask * on + (1 - mask) * off

    def _masked(self, flag: str, value: Tensor) -> Tensor:
        return value if self.use[flag] == "all" else self.mask[flag] * value

    @torch.no_grad()
    def __call__(
        self, inputs: Tensor, targets: Tensor, states: list[Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        model = self.model
        S, E, G = model.state_size, model.embedding_size, model.G
        grads: dict[str, Tensor] = {}
        rows = torch.arange(G, device=inputs.device)[:, None]
        h = model.embedding[rows, inputs] + model.embedding_bias
        tapes = []
        new_states = []
        for module, s in zip(model.layers, states, strict=True):
            layer = cast(_StackedLayer, module)
            tape: dict[str, Tensor] = {"x": h, "s": s}
            u = torch.cat([h, s], dim=2)
            tape["u"] = u
            if model.has_ig:
                gates = torch.baddbmm(layer.input_gates_bias, u, layer.input_gates_weight)
                gates.sigmoid_()
                tape["input_gates"] = gates
                u_gated = self._blend("use_input_gate", gates * u, u)
            else:
                u_gated = u
            tape["u_gated"] = u_gated
            pre = torch.baddbmm(layer.combined_bias, u_gated, layer.combined_weight)
            c = torch.tanh(pre[..., :S])
            tape["c"] = c
            n = c
            if model.has_sg:
                block = model.sg_block * S
                g = torch.baddbmm(pre[..., block : block + S], c, layer.state_gate_candidate)
                g.sigmoid_()
                tape["g"] = g
                n = self._blend("use_state_gate", g * c + (1 - g) * s, c)
            tape["n1"] = n
            if model.has_fg:
                block = model.fg_block * S
                f = torch.baddbmm(pre[..., block : block + S], n, layer.forget_gate_state)
                f.sigmoid_()
                tape["f"] = f
                n = self._blend("use_forget_gate", f * n, n)
            new_states.append(n)
            values = {
                "new": (n, "use_new_state"),
                "old": (u_gated[..., E:], "use_old_state"),
                "input": (h, "use_residual"),
            }
            parts = [
                self._masked(values[name][1], values[name][0]) for name, _ in model.readout_parts
            ]
            r = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
            tape["r"] = r
            out = torch.baddbmm(layer.readout_bias, r, layer.readout_weight)
            o = out[..., :E]
            tape["o"] = o
            so = torch.sigmoid(o)
            tape["so"] = so
            swish = o * so
            if model.has_og:
                gate = torch.baddbmm(out[..., E:], o, layer.output_gate_output)
                gate.sigmoid_()
                tape["gate"] = gate
                h = self._blend("use_output_gate", o * gate, swish)
            else:
                h = swish
            tapes.append(tape)
        logits = torch.baddbmm(model.head_bias, h, model.head_weight)
        row_losses, d_logits = cross_entropy_with_gradient(logits, targets)
        losses = row_losses.mean(dim=1)
        grads["head_weight"] = torch.bmm(_transposed(h), d_logits)
        grads["head_bias"] = d_logits.sum(1, keepdim=True)
        d_h = torch.bmm(d_logits, _transposed(model.head_weight))
        for index in reversed(range(model.n_layers)):
            d_h = self._backward_layer(index, tapes[index], d_h, grads)
        flat = (rows * 256 + inputs).reshape(-1)
        d_embedding = torch.zeros_like(model.embedding)
        d_embedding.view(G * 256, E).index_add_(0, flat, d_h.reshape(-1, E))
        grads["embedding"] = d_embedding
        grads["embedding_bias"] = d_h.sum(1, keepdim=True)
        for name, parameter in self.named.items():
            parameter.grad = grads.get(name)
        return losses, new_states

    def _backward_layer(
        self, index: int, tape: dict[str, Tensor], d_y: Tensor, grads: dict[str, Tensor]
    ) -> Tensor:
        model = self.model
        layer = cast(_StackedLayer, model.layers[index])
        E = model.embedding_size
        prefix = f"layers.{index}."
        o, so = tape["o"], tape["so"]
        if model.has_og:
            gate = tape["gate"]
            d_gate_pre = self._masked("use_output_gate", d_y * o * _slope(gate))
            d_o = self._blend("use_output_gate", d_y * gate, d_y * _swish_slope(o, so))
            grads[prefix + "output_gate_output"] = torch.bmm(_transposed(o), d_gate_pre)
            d_o.baddbmm_(d_gate_pre, _transposed(layer.output_gate_output))
            d_out = torch.cat([d_o, d_gate_pre], dim=2)
        else:
            d_out = d_y * _swish_slope(o, so)
        grads[prefix + "readout_weight"] = torch.bmm(_transposed(tape["r"]), d_out)
        grads[prefix + "readout_bias"] = d_out.sum(1, keepdim=True)
        d_r = torch.bmm(d_out, _transposed(layer.readout_weight))
        d_part: dict[str, Tensor] = {}
        column = 0
        for name, width in model.readout_parts:
            flag = {"new": "use_new_state", "old": "use_old_state", "input": "use_residual"}[name]
            d_part[name] = self._masked(flag, d_r[..., column : column + width])
            column += width
        d_pre = None
        if "new" in d_part:
            c, n1 = tape["c"], tape["n1"]
            d_n1 = d_part["new"]
            blocks = []
            d_state_pre = d_forget_pre = None
            if model.has_fg:
                f = tape["f"]
                d_forget_pre = self._masked("use_forget_gate", d_n1 * n1 * _slope(f))
                grads[prefix + "forget_gate_state"] = torch.bmm(_transposed(n1), d_forget_pre)
                d_n1 = self._blend("use_forget_gate", d_n1 * f, d_n1)
                d_n1 = torch.baddbmm(d_n1, d_forget_pre, _transposed(layer.forget_gate_state))
            d_c = d_n1
            if model.has_sg:
                g = tape["g"]
                d_state_pre = self._masked("use_state_gate", d_n1 * (c - tape["s"]) * _slope(g))
                grads[prefix + "state_gate_candidate"] = torch.bmm(_transposed(c), d_state_pre)
                d_c = self._blend("use_state_gate", d_n1 * g, d_n1)
                d_c = torch.baddbmm(d_c, d_state_pre, _transposed(layer.state_gate_candidate))
            blocks.append(torch.addcmul(d_c, d_c * c, c, value=-1.0))
            if d_state_pre is not None:
                blocks.append(d_state_pre)
            if d_forget_pre is not None:
                blocks.append(d_forget_pre)
            d_pre = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=2)
            grads[prefix + "combined_weight"] = torch.bmm(_transposed(tape["u_gated"]), d_pre)
            grads[prefix + "combined_bias"] = d_pre.sum(1, keepdim=True)
        if model.has_ig:
            u, gates = tape["u"], tape["input_gates"]
            if d_pre is not None:
                d_u_gated = torch.bmm(d_pre, _transposed(layer.combined_weight))
                if "old" in d_part:
                    d_u_gated[..., E:] += d_part["old"]
            else:
                d_u_gated = torch.cat([torch.zeros_like(tape["x"]), d_part["old"]], dim=2)
            d_gates_pre = self._masked("use_input_gate", d_u_gated * u * _slope(gates))
            grads[prefix + "input_gates_weight"] = torch.bmm(_transposed(u), d_gates_pre)
            grads[prefix + "input_gates_bias"] = d_gates_pre.sum(1, keepdim=True)
            d_x_gated = d_u_gated[..., :E]
            d_x = self._blend("use_input_gate", d_x_gated * gates[..., :E], d_x_gated)
            d_x = torch.baddbmm(d_x, d_gates_pre, _transposed(layer.input_gates_weight[:, :E, :]))
        elif d_pre is not None:
            d_x = torch.bmm(d_pre, _transposed(layer.combined_weight[:, :E, :]))
        else:
            d_x = torch.zeros_like(tape["x"])
        if "input" in d_part:
            d_x = d_x + d_part["input"]
        return d_x


def _losses(logits: Tensor, targets: Tensor) -> Tensor:
    G, B, V = logits.shape
    return (
        functional.cross_entropy(logits.reshape(G * B, V), targets.reshape(G * B), reduction="none")
        .view(G, B)
        .mean(dim=1)
    )


@torch.no_grad()
def _evaluate(
    model: StackedByteLM,
    data: NDArray[np.uint8],
    config: TrainConfig,
    zero_state: bool,
    device: torch.device,
) -> list[float]:
    length = min(config.eval_length, int(data.size))
    starts = np.linspace(0, data.size - length, config.eval_windows).astype(np.int64)
    batch = data[starts[:, None] + np.arange(length)[None, :]].astype(np.int64)
    sequence = torch.from_numpy(batch.T.copy()).to(device)  # [length, windows]
    G = model.G
    states = model.initial_state(config.eval_windows, device)
    total = torch.zeros(G, dtype=torch.float64, device=device)
    for j in range(length - 1):
        if zero_state:
            states = model.initial_state(config.eval_windows, device)
        logits, states = model(sequence[j].expand(G, -1), states)
        total += _losses(logits, sequence[j + 1].expand(G, -1)).double()
    return (total / (length - 1)).tolist()


def _stacked_optimizer_state(model: StackedByteLM, optimizer: Adam, members: list[Adam]) -> None:
    """Set the stacked ``optimizer``'s moments and step counts from each member's Adam."""
    params = dict(model.named_parameters())
    for name, parameter in params.items():
        counts = set()
        for g, member in enumerate(members):
            for single, _, stacked_name, _ in model._links(g):
                if stacked_name == name and single in member.steps:
                    counts.add(member.steps[single])
        if not counts:
            continue  # never updated (or only ever with zero gradient: no state needed)
        if len(counts) != 1:
            raise ConfigError("checkpoints: the stacked runs were saved at different Adam steps")
        optimizer.steps[name] = counts.pop()
        optimizer.exp_avg[name] = torch.zeros_like(parameter)
        optimizer.exp_avg_sq[name] = torch.zeros_like(parameter)
    for g, member in enumerate(members):
        model.stack_tensors(g, member.exp_avg, optimizer.exp_avg)
        model.stack_tensors(g, member.exp_avg_sq, optimizer.exp_avg_sq)


def _member_checkpoint(
    model: StackedByteLM, optimizer: Adam, g: int, trained: set[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, int]]:
    """Member ``g``'s model tensors, Adam tensors and Adam steps in the single-run format."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    tensors = model.unstack_tensors(g, params)
    moment_names = {
        single
        for single, _, stacked_name, _ in model._links(g)
        if single in trained and stacked_name in optimizer.steps
    }
    exp_avg = model.unstack_tensors(g, optimizer.exp_avg, moment_names)
    exp_avg_sq = model.unstack_tensors(g, optimizer.exp_avg_sq, moment_names)
    steps: dict[str, int] = {}
    for single, _, stacked_name, _ in model._links(g):
        if single in moment_names:
            steps[single] = optimizer.steps[stacked_name]
    adam_tensors = {f"adam.exp_avg.{n}": t for n, t in exp_avg.items()}
    adam_tensors.update({f"adam.exp_avg_sq.{n}": t for n, t in exp_avg_sq.items()})
    return tensors, adam_tensors, steps


def train_stacked(
    architectures: list[dict[str, Any]],
    config: TrainConfig,
    *,
    seeds: list[int],
    corpus: NDArray[np.uint8] | None = None,
    folders: list[str | Path] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Train same-shape configurations together; one metrics dict per config, as ``train_run``.

    With ``folders`` (one run folder per configuration) every member writes the checkpoint of a
    single run (:func:`rnnlab.gated.train.train_run`'s files and format: its model, its Adam
    state, its data RNG, the step and its metrics so far) every ``config.checkpoint_every_s``
    seconds at window boundaries, and ``on_checkpoint(step)`` is called after each round. A group
    resumes from its members' checkpoints when every member has a valid one at the same step
    (members are checkpointed together, so they normally do); otherwise it starts afresh.
    """
    if len(architectures) != len(seeds):
        raise ConfigError("seeds: need one seed per architecture")
    if folders is not None and len(folders) != len(seeds):
        raise ConfigError("folders: need one run folder per architecture")
    keys = {stack_key(a) for a in architectures}
    if None in keys or len(keys) != 1:
        raise ConfigError(
            "architectures: stacking needs one n_layers/state_size/embedding_size "
            "and no extra options"
        )
    started = time.time()
    device = resolve_device(config.device)
    splits = split_bytes(corpus if corpus is not None else load_corpus(config.data), config.split)
    singles = [build_model(arch, seed) for arch, seed in zip(architectures, seeds, strict=False)]
    untrained = []
    probe = torch.tensor([1, 2])
    for single in singles:  # which parameters get no gradient (a one-step probe)
        logits, _ = single(probe, single.initial_state(2))
        functional.cross_entropy(logits, probe).backward()
        untrained.append(parameters_without_gradient(single))
        single.zero_grad(set_to_none=True)
    run_folders = [Path(f) for f in folders] if folders is not None else None
    G = len(singles)
    rngs = [np.random.Generator(np.random.PCG64(seed)) for seed in seeds]
    ema = [float(config.ema_init)] * G
    curve_ema: list[list[float]] = [[] for _ in range(G)]
    curve_mean: list[list[float]] = [[] for _ in range(G)]
    pending: list[list[float]] = [[] for _ in range(G)]
    step = resumed_from = 0
    elapsed_before = 0.0
    members: list[Adam] | None = None
    if run_folders is not None:
        saved_members = [Adam(list(single.named_parameters()), lr=config.lr) for single in singles]
        saved = [
            load_checkpoint(folder, single, adam)
            for folder, single, adam in zip(run_folders, singles, saved_members, strict=True)
        ]
        steps_saved = {None if p is None else int(p["step"]) for p in saved}
        if None not in steps_saved and len(steps_saved) == 1:
            members = saved_members
            step = resumed_from = cast(int, steps_saved.pop())
            for g, progress in enumerate(cast(list[dict[str, Any]], saved)):
                ema[g] = float(progress["ema"])
                curve_ema[g] = list(progress["curve_ema"])
                curve_mean[g] = list(progress["curve_mean"])
                pending[g] = list(progress["pending"])
                rngs[g].bit_generator.state = progress["rng"]
                elapsed_before = float(progress.get("train_seconds", 0.0))
        elif any(p is not None for p in saved):  # partial or mixed: rebuild the fresh models
            singles = [
                build_model(arch, seed) for arch, seed in zip(architectures, seeds, strict=False)
            ]
    model = StackedByteLM(singles).to(device)
    optimizer = Adam(list(model.named_parameters()), lr=config.lr)
    one_step = StackedOneStepGradient(model) if config.truncation == 1 else None
    if members is not None:
        _stacked_optimizer_state(model, optimizer, members)
    trained = [
        {name for name, _ in single.named_parameters()} - set(untrained[g])
        for g, single in enumerate(singles)
    ]

    def save_all() -> None:
        for g, folder in enumerate(cast(list[Path], run_folders)):
            tensors, adam_tensors, adam_steps = _member_checkpoint(model, optimizer, g, trained[g])
            save_checkpoint_tensors(
                folder,
                tensors,
                adam_tensors,
                adam_steps,
                {
                    "step": step,
                    "ema": ema[g],
                    "curve_ema": curve_ema[g],
                    "curve_mean": curve_mean[g],
                    "pending": pending[g],
                    "untrained_parameters": untrained[g],
                    "rng": rngs[g].bit_generator.state,
                    "train_seconds": elapsed_before + time.monotonic() - segment_start,
                    "stacked_with": G,
                },
            )

    last_checkpoint = time.monotonic()
    segment_start = time.monotonic()
    while step < config.steps:
        windows = np.stack(
            [sample_windows(splits.train, config.batch_size, config.window, rng) for rng in rngs]
        )  # [G, B, W]
        sequence = torch.from_numpy(windows.transpose(2, 0, 1).copy()).to(device)  # [W, G, B]
        states = model.initial_state(config.batch_size, device)
        positions = min(config.window - 1, config.steps - step)
        window_losses: list[Tensor] = []
        j = 0
        if one_step is not None:  # k = 1: closed-form gradient, no autograd graph
            for j in range(positions):
                step_losses, states = one_step(sequence[j], sequence[j + 1], states)
                optimizer.step()
                window_losses.append(step_losses)
            j = positions
        while j < positions:
            length = min(config.truncation, positions - j)
            losses = []
            for offset in range(length):
                logits, states = model(sequence[j + offset], states)
                losses.append(_losses(logits, sequence[j + offset + 1]))
            per_model = losses[0] if length == 1 else torch.stack(losses).mean(dim=0)
            optimizer.zero_grad()
            per_model.sum().backward()
            optimizer.step()
            states = [s.detach() for s in states]
            window_losses.extend(item.detach() for item in losses)
            j += length
        step += positions
        values = torch.stack(window_losses).double().cpu().numpy()  # [positions, G]
        for g in range(G):
            for value in values[:, g].tolist():
                pending[g].append(value)
                ema[g] = config.ema_decay * ema[g] + (1.0 - config.ema_decay) * value
                if len(pending[g]) == config.log_every:
                    curve_ema[g].append(ema[g])
                    curve_mean[g].append(sum(pending[g]) / len(pending[g]))
                    pending[g].clear()
        due = time.monotonic() - last_checkpoint >= config.checkpoint_every_s
        if run_folders is not None and step < config.steps and due:
            save_all()
            last_checkpoint = time.monotonic()
            if on_checkpoint is not None:
                on_checkpoint(step)
    train_seconds = elapsed_before + time.monotonic() - segment_start
    for g in range(G):
        if pending[g]:
            curve_ema[g].append(ema[g])
            curve_mean[g].append(sum(pending[g]) / len(pending[g]))
    eval_started = time.monotonic()
    val = _evaluate(model, splits.validation, config, False, device)
    zeroed = _evaluate(model, splits.validation, config, True, device)
    eval_seconds = time.monotonic() - eval_started
    results = []
    for g in range(G):
        last = curve_mean[g][-config.last_k :]
        results.append(
            {
                "steps": step,
                "log_every": config.log_every,
                "curve_ema": curve_ema[g],
                "curve_mean": curve_mean[g],
                "min_ema": min(curve_ema[g]),
                "final_ema": curve_ema[g][-1],
                "mean_last_k": sum(last) / len(last),
                "last_k": len(last),
                "val_loss": val[g],
                "val_loss_state_zeroed": zeroed[g],
                "memory_gain": zeroed[g] - val[g],
                "untrained_parameters": untrained[g],
                "n_parameters": singles[g].n_parameters(),
                "resumed_from_step": resumed_from,
                "train_seconds": train_seconds / G,
                "eval_seconds": eval_seconds / G,
                "wall_seconds": (time.time() - started) / G,
                "device": str(device),
                "stacked_with": G,
            }
        )
    return results
