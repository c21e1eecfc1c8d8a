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
its windows from its own data RNG. Stacked runs do not checkpoint (a retried group restarts).
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional

from rnnlab.errors import ConfigError
from rnnlab.gated.data import load_corpus, sample_windows, split_bytes
from rnnlab.gated.model import ByteLM, RNNLayer
from rnnlab.gated.train import (
    Adam,
    TrainConfig,
    build_model,
    parameters_without_gradient,
    resolve_device,
)

__all__ = ["StackedByteLM", "stack_key", "train_stacked"]

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

    def _place(self, g: int, model: ByteLM) -> None:
        S, E = self.state_size, self.embedding_size
        self.embedding[g] = model.embedding
        self.embedding_bias[g, 0] = model.embedding_bias
        self.head_weight[g] = model.head.weight.t()
        self.head_bias[g, 0] = model.head.bias
        f = model.flags
        uses = {"new": f.use_new_state, "old": f.use_old_state, "input": f.use_residual}
        rows: list[int] = []  # read-out rows of the parts this model uses, in its own order
        offset = 0
        for name, width in self.readout_parts:
            if uses[name]:
                rows += list(range(offset, offset + width))
            offset += width
        index = torch.tensor(rows)
        for stacked_layer, layer in zip(self.layers, model.layers, strict=True):
            stacked = cast(_StackedLayer, stacked_layer)
            w = cast(RNNLayer, layer).upstream_weights()
            if f.use_input_gate:
                stacked.input_gates_weight[g] = torch.cat(
                    [w["input_gate_x.weight"], w["input_gate_s.weight"]]
                ).t()
                stacked.input_gates_bias[g, 0] = torch.cat(
                    [w["input_gate_x.bias"], w["input_gate_s.bias"]]
                )
            stacked.combined_weight[g, :, :S] = w["state.weight"].t()
            stacked.combined_bias[g, 0, :S] = w["state.bias"]
            if f.use_state_gate:
                cols = slice(self.sg_block * S, (self.sg_block + 1) * S)
                stacked.combined_weight[g, :, cols] = w["state_gate.weight"][:, : E + S].t()
                stacked.combined_bias[g, 0, cols] = w["state_gate.bias"]
                stacked.state_gate_candidate[g] = w["state_gate.weight"][:, E + S :].t()
            if f.use_forget_gate:
                cols = slice(self.fg_block * S, (self.fg_block + 1) * S)
                stacked.combined_weight[g, :, cols] = w["forget_gate.weight"][:, : E + S].t()
                stacked.combined_bias[g, 0, cols] = w["forget_gate.bias"]
                stacked.forget_gate_state[g] = w["forget_gate.weight"][:, E + S :].t()
            stacked.readout_weight[g, index, :E] = w["output.weight"].t()
            stacked.readout_bias[g, 0, :E] = w["output.bias"]
            if f.use_output_gate:
                stacked.readout_weight[g, index, E:] = w["output_gate.weight"][:, E:].t()
                stacked.readout_bias[g, 0, E:] = w["output_gate.bias"]
                stacked.output_gate_output[g] = w["output_gate.weight"][:, :E].t()

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


def train_stacked(
    architectures: list[dict[str, Any]],
    config: TrainConfig,
    *,
    seeds: list[int],
    corpus: NDArray[np.uint8] | None = None,
) -> list[dict[str, Any]]:
    """Train same-shape configurations together; one metrics dict per config, as ``train_run``."""
    if len(architectures) != len(seeds):
        raise ConfigError("seeds: need one seed per architecture")
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
    model = StackedByteLM(singles).to(device)
    optimizer = Adam(list(model.named_parameters()), lr=config.lr)
    rngs = [np.random.Generator(np.random.PCG64(seed)) for seed in seeds]
    G = model.G
    ema = [float(config.ema_init)] * G
    curve_ema: list[list[float]] = [[] for _ in range(G)]
    curve_mean: list[list[float]] = [[] for _ in range(G)]
    pending: list[list[float]] = [[] for _ in range(G)]
    step = 0
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
    train_seconds = time.monotonic() - segment_start
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
                "resumed_from_step": 0,
                "train_seconds": train_seconds / G,
                "eval_seconds": eval_seconds / G,
                "wall_seconds": (time.time() - started) / G,
                "device": str(device),
                "stacked_with": G,
            }
        )
    return results
