"""Angle metrics of the microcircuit, computed for a whole batch from its state (streaming).

All angles are in degrees: arccos of the cosine similarity, with cos = tr(AᵀB)/(‖A‖_F‖B‖_F)
for matrices; 90° is returned where a norm is zero.
"""

from __future__ import annotations

import numpy as np

from rnnlab.microcircuit.network import Layout, Options, activation, activation_derivative

__all__ = ["angle", "backprop_ann_updates", "record_metrics"]


def angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between matching matrices (or vectors) along the leading batch axis, in degrees."""
    axes = tuple(range(1, a.ndim))
    dot = np.sum(a * b, axis=axes)
    norms = np.sqrt(np.sum(a * a, axis=axes) * np.sum(b * b, axis=axes))
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _gains(opts: Options, layout: Layout, views: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
    """D_ℓ = φ′(k_ℓ·vbas_ℓ), with k_N = gbas/(gl+gbas) for the output (the upstream used k_h)."""
    out = []
    for L in range(layout.N):
        k = opts.k_output if L == layout.N - 1 else opts.k_hidden
        out.append(activation_derivative(opts.activations[L], k * views["vbas"][L]))
    return out


def _forward_chain(
    layout: Layout, views: dict[str, list[np.ndarray]], gains, h: int, weighted: bool
):
    """P = W[h+1] (layered) or W[N-1]·D·…·D·W[h+1] (skip), batched: (batch, n_pre, n_h)."""
    product = views["W"][h + 1]
    if layout.skip:
        for L in range(h + 2, layout.N):
            inner = product * gains[L - 1][:, :, None] if weighted else product
            product = views["W"][L] @ inner
    return product


def record_metrics(opts: Options, layout: Layout, state: np.ndarray) -> dict[str, np.ndarray]:
    """Angles per hidden layer (batch, n_hidden) and per interneuron population (batch, n_pops).

    - ``angle_B_WT``: ∠(B_ℓ, W_{ℓ+1}ᵀ) (skip: the transposed forward chain);
    - ``angle_B_RHS``: ∠(B_ℓ, D_ℓ·W_{ℓ+1}ᵀ·D_{ℓ+1}), the PAL fixed point (φ′ at k·vbas);
    - ``angle_jacobians``: ∠(J_g, J_fᵀ) with J_g = B_ℓ·D_{ℓ+1}, J_fᵀ = D_ℓ·W_{ℓ+1}ᵀ;
    - ``angle_BPI_negB``: ∠(B^PI_ℓ, −B_ℓ) and ``angle_WIP_W``: ∠(W^IP_j, W_top(j)) (SPS health).
    """
    views = layout.batch_views(state)
    gains = _gains(opts, layout, views)
    out: dict[str, list[np.ndarray]] = {
        "angle_B_WT": [],
        "angle_B_RHS": [],
        "angle_jacobians": [],
        "angle_BPI_negB": [],
    }
    for h in range(layout.n_hidden):
        B = views["B"][h]
        p = layout.pre(h)
        plain = np.swapaxes(_forward_chain(layout, views, gains, h, weighted=False), 1, 2)
        weighted = np.swapaxes(_forward_chain(layout, views, gains, h, weighted=True), 1, 2)
        rhs = gains[h][:, :, None] * weighted * gains[p][:, None, :]
        out["angle_B_WT"].append(angle(B, plain))
        out["angle_B_RHS"].append(angle(B, rhs))
        out["angle_jacobians"].append(
            angle(B * gains[p][:, None, :], gains[h][:, :, None] * weighted)
        )
        out["angle_BPI_negB"].append(angle(views["BPI"][h], -B))
    result = {key: np.stack(values, axis=1) for key, values in out.items()}
    result["angle_WIP_W"] = np.stack(
        [angle(views["WIP"][j], views["W"][layout.top(j)]) for j in range(layout.n_pops)], axis=1
    )
    return result


def backprop_ann_updates(
    opts: Options, layout: Layout, state: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """∠(microcircuit ΔW_ℓ, rate-ANN backprop ΔW_ℓ) per layer, (batch, N), in degrees.

    Microcircuit: (φ(ŭ_ℓ) − φ(k_ℓ·vbas_ℓ)) ⊗ r_{ℓ−1} at the current state. ANN (same weights,
    current input): v_ℓ = k_ℓ·W_ℓ·r_{ℓ−1}, r_ℓ = φ(v_ℓ), e_N = target − v_N,
    e_{ℓ−1} = φ′(v_{ℓ−1}) ⊙ W_ℓᵀ e_ℓ, ΔW_ℓ = e_ℓ ⊗ r_{ℓ−1} (k_N for the output).
    """
    views = layout.batch_views(state)
    N = layout.N
    rates = [views["r0"][0]]
    voltages = []
    for L in range(N):
        k = opts.k_output if L == N - 1 else opts.k_hidden
        v = k * np.einsum("bij,bj->bi", views["W"][L], rates[-1])
        voltages.append(v)
        rates.append(activation(opts.activations[L], v))
    errors = [np.zeros(0)] * N
    errors[N - 1] = target - voltages[N - 1]
    for L in range(N - 1, 0, -1):
        back = np.einsum("bji,bj->bi", views["W"][L], errors[L])
        errors[L - 1] = activation_derivative(opts.activations[L - 1], voltages[L - 1]) * back
    angles = []
    for L in range(N):
        k = opts.k_output if L == N - 1 else opts.k_hidden
        below = views["r0"][0] if L == 0 else views["r"][L - 1]
        post = views["r"][L] - activation(opts.activations[L], k * views["vbas"][L])
        micro = post[:, :, None] * below[:, None, :]
        ann = errors[L][:, :, None] * rates[L][:, None, :]
        angles.append(angle(micro, ann))
    return np.stack(angles, axis=1)
