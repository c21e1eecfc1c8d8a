"""Independent PyTorch reference implementation of the CTRNN equations.

The same model as :mod:`rnnlab.ctrnn.reference` (see ``docs/ctrnn.md``), written with PyTorch so
that autograd provides the reference gradient the Rust engine's adjoint is tested against, and so
that it can serve as a speed baseline (any dtype, any device):

    τ ⊙ ds/dt = −s + W·φ(g ⊙ (s + θ)) + U·x(t),        y = V·s + c.

Frames, substeps, integrators (``euler``, ``exp_euler``, ``rk4``), the MSE loss and chunked
truncated BPTT follow the specification exactly. Nothing here imports the Rust engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ACTIVATIONS", "INTEGRATORS", "PARAM_KEYS", "TorchCTRNN", "loss_and_grad"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logistic": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
}
INTEGRATORS = ("euler", "exp_euler", "rk4")
PARAM_KEYS = ("W", "tau", "theta", "gain", "U", "V", "c")


def _tensor(
    a: Any, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """A tensor copy of ``a`` (array, sequence, scalar or tensor) with the given dtype/device.

    NumPy inputs are copied first, so read-only arrays (for instance views handed out by the
    engine) never reach ``torch.from_numpy``, which warns about them.
    """
    if isinstance(a, torch.Tensor):
        return a.to(dtype=dtype, device=device)
    return torch.from_numpy(np.array(a, dtype=np.float64)).to(dtype=dtype, device=device)


class TorchCTRNN(nn.Module):
    """CTRNN with parameters W, tau, theta, gain, U, V, c held as ``nn.Parameter``.

    If a ``mask`` buffer is present the effective recurrent matrix is ``W * mask``, so masked
    entries of W have no effect and receive exactly zero gradient.
    """

    mask: torch.Tensor | None

    def __init__(
        self,
        W: torch.Tensor,
        tau: torch.Tensor,
        theta: torch.Tensor,
        gain: torch.Tensor,
        U: torch.Tensor,
        V: torch.Tensor,
        c: torch.Tensor,
        mask: torch.Tensor | None = None,
        activation: str = "logistic",
        integrator: str = "euler",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}"
            )
        if integrator not in INTEGRATORS:
            raise ValueError(
                f"unknown integrator {integrator!r}; expected one of {', '.join(INTEGRATORS)}"
            )
        self.activation = activation
        self.integrator = integrator
        self._phi = ACTIVATIONS[activation]
        self.W = nn.Parameter(W)
        self.tau = nn.Parameter(tau)
        self.theta = nn.Parameter(theta)
        self.gain = nn.Parameter(gain)
        self.U = nn.Parameter(U)
        self.V = nn.Parameter(V)
        self.c = nn.Parameter(c)
        self.register_buffer("mask", mask)

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        activation: str = "logistic",
        integrator: str = "euler",
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> TorchCTRNN:
        """Build from a dict of arrays W, tau, theta, gain, U, V, c (and an optional mask)."""

        def t(key: str) -> torch.Tensor:
            return _tensor(params[key], dtype, device).clone()

        mask = t("mask") if params.get("mask") is not None else None
        return cls(
            t("W"),
            t("tau"),
            t("theta"),
            t("gain"),
            t("U"),
            t("V"),
            t("c"),
            mask=mask,
            activation=activation,
            integrator=integrator,
        )

    @property
    def n_neurons(self) -> int:
        """Number of neurons N."""
        return self.W.shape[0]

    def forward(
        self,
        x: torch.Tensor,
        dts: torch.Tensor | Sequence[float] | np.ndarray | float,
        substeps: int,
        s0: torch.Tensor | None = None,
        truncation: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a sequence of T frames.

        Args:
            x: inputs [B, T, n_in].
            dts: the T frame durations (> 0), a scalar being broadcast to every frame.
            substeps: number (≥ 1) of equal integration steps per frame.
            s0: start state [B, N]; zeros when ``None``.
            truncation: K for chunked truncated BPTT: the state is detached at the start of
                every frame k with k % K == 0 and k > 0 (the loss is unchanged, the gradient is
                cut). ``None`` is full BPTT.

        Returns:
            ``(y, states)``: y [B, T, n_out] read at every frame end, states [B, T, N].
        """
        if x.ndim != 3:
            raise ValueError(f"x must be [B, T, n_in], got shape {tuple(x.shape)}")
        if substeps < 1:
            raise ValueError("substeps must be >= 1")
        if truncation is not None and truncation < 1:
            raise ValueError("truncation must be None or >= 1")
        b, t_len, _ = x.shape
        dtype, device = self.W.dtype, self.W.device
        x = x.to(dtype=dtype, device=device)
        dts_t = _tensor(dts, dtype, device).expand(t_len)
        if not bool(torch.all(dts_t > 0)):
            raise ValueError("every frame duration in dts must be > 0")

        w = self.W if self.mask is None else self.W * self.mask
        w_t = w.t()
        gain, theta, tau, phi = self.gain, self.theta, self.tau, self._phi
        ux_all = x @ self.U.t()  # [B, T, N]: U·x_k for every frame, in one matmul
        hs = dts_t / substeps  # [T] substep lengths

        def drive(s: torch.Tensor, ux: torch.Tensor) -> torch.Tensor:
            return torch.addmm(ux, phi(gain * (s + theta)), w_t)

        a_all = hs[:, None] / tau  # [T, N]: a = h / τ for every frame
        inv_tau = 1.0 / tau
        if self.integrator == "exp_euler":
            decay_all = torch.exp(-a_all)  # e^{−a}
            leak_all = -torch.expm1(-a_all)  # 1 − e^{−a}

        if s0 is None:
            s = torch.zeros(b, self.n_neurons, dtype=dtype, device=device)
        else:
            s = s0.to(dtype=dtype, device=device)
        states = []
        for k in range(t_len):
            if truncation is not None and k > 0 and k % truncation == 0:
                s = s.detach()
            ux = ux_all[:, k, :]
            if self.integrator == "euler":
                a = a_all[k]
                for _ in range(substeps):
                    s = s + a * (drive(s, ux) - s)
            elif self.integrator == "exp_euler":
                decay, leak = decay_all[k], leak_all[k]
                for _ in range(substeps):
                    s = decay * s + leak * drive(s, ux)
            else:  # rk4 on ds/dt = (−s + d(s)) / τ
                h = hs[k]
                half = 0.5 * h
                for _ in range(substeps):
                    k1 = (drive(s, ux) - s) * inv_tau
                    s2 = s + half * k1
                    k2 = (drive(s2, ux) - s2) * inv_tau
                    s3 = s + half * k2
                    k3 = (drive(s3, ux) - s3) * inv_tau
                    s4 = s + h * k3
                    k4 = (drive(s4, ux) - s4) * inv_tau
                    s = s + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
            states.append(s)
        states_t = torch.stack(states, dim=1)  # [B, T, N]
        y = states_t @ self.V.t() + self.c
        return y, states_t


def loss_and_grad(
    params: Mapping[str, Any],
    x: np.ndarray,
    target: np.ndarray,
    dts: np.ndarray | Sequence[float] | float,
    substeps: int,
    s0: np.ndarray | None,
    activation: str = "logistic",
    integrator: str = "euler",
    truncation: int | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """MSE loss and its autograd gradient, in float64 on the CPU.

    Args:
        params: dict of arrays W, tau, theta, gain, U, V, c (optional ``mask``).
        x: inputs [B, T, n_in] (or unbatched [T, n_in]).
        target: targets shaped like the output y, [B, T, n_out] (or [T, n_out]).
        dts: the T frame durations.
        substeps: integration steps per frame.
        s0: start state [B, N] (or [N]); zeros when ``None``.
        activation, integrator: as in :class:`TorchCTRNN`.
        truncation: K for chunked truncated BPTT, ``None`` for full BPTT.

    Returns:
        ``(loss, grads)`` with the mean over (batch, frames, outputs) of (y − target)², and the
        gradients for keys W, tau, theta, gain, U, V, c, s0 as float64 NumPy arrays (the tau
        gradient is with respect to τ itself; the W gradient is multiplied by ``mask`` if given).
    """
    model = TorchCTRNN.from_params(
        params, activation=activation, integrator=integrator, dtype=torch.float64
    )
    x_t = _tensor(x)
    target_t = _tensor(target)
    unbatched = x_t.ndim == 2
    if unbatched:
        x_t, target_t = x_t[None], target_t[None]
    n = model.n_neurons
    if s0 is None:
        s0_t = torch.zeros(x_t.shape[0], n, dtype=torch.float64)
    else:
        s0_t = _tensor(s0).reshape(-1, n)
        s0_t = s0_t.expand(x_t.shape[0], n).clone()
    s0_t.requires_grad_(True)

    y, _ = model(x_t, dts, substeps, s0=s0_t, truncation=truncation)
    if target_t.shape != y.shape:
        raise ValueError(f"target has shape {tuple(target_t.shape)}, expected {tuple(y.shape)}")
    loss = torch.mean((y - target_t) ** 2)
    leaves = [getattr(model, k) for k in PARAM_KEYS] + [s0_t]
    raw = torch.autograd.grad(loss, leaves, allow_unused=True)

    grads: dict[str, np.ndarray] = {}
    for key, leaf, g in zip((*PARAM_KEYS, "s0"), leaves, raw, strict=True):
        grads[key] = np.zeros(tuple(leaf.shape)) if g is None else g.detach().cpu().numpy()
    if "mask" in params and params["mask"] is not None:
        grads["W"] = grads["W"] * np.asarray(params["mask"], dtype=np.float64)
    if unbatched:
        grads["s0"] = grads["s0"][0]
    return float(loss.detach()), grads
