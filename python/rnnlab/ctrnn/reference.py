"""Independent NumPy reference implementation of the CTRNN equations.

This module is the slow, readable reference that the test-suite and the benchmarks compare the
Rust engine (``rnnlab._native``) against. It is written straight from ``docs/ctrnn.md`` and
shares no code with the engine:

    τ ⊙ ds/dt = −s + W·φ(g ⊙ (s + θ)) + U·x(t),        y = V·s + c.

A sequence is a list of T frames; frame k lasts ``dts[k]`` and holds its input ``x_k`` constant.
Each frame is integrated with ``substeps`` equal steps h = dts[k] / substeps, all neurons updated
synchronously, and the output y_k = V·s(t_{k+1}) + c is read at the end of the frame.

Everything is computed in float64 (float32 inputs are upcast). Only NumPy is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "INTEGRATORS",
    "PARAM_KEYS",
    "activation",
    "finite_difference_grad",
    "forward",
    "mse_loss",
]

ACTIVATIONS = ("logistic", "tanh", "relu", "identity")
INTEGRATORS = ("euler", "exp_euler", "rk4")
#: Parameter names, in the order used by :func:`finite_difference_grad`.
PARAM_KEYS = ("W", "tau", "theta", "gain", "U", "V", "c")


def activation(name: str, z: np.ndarray) -> np.ndarray:
    """Apply the activation ``name`` (logistic, tanh, relu or identity) element-wise to ``z``."""
    z = np.asarray(z, dtype=np.float64)
    if name == "logistic":
        # Numerically stable logistic: never exponentiates a large positive number.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "identity":
        return z.copy()
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")


def _as_f64_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Copy the model parameters to float64 arrays (``mask`` is ignored: W is already masked)."""
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise KeyError(f"params is missing {missing}")
    return {k: np.array(params[k], dtype=np.float64) for k in PARAM_KEYS}


def _drive(p: dict[str, np.ndarray], s: np.ndarray, ux: np.ndarray, act: str) -> np.ndarray:
    """d(s) = W·φ(g ⊙ (s + θ)) + U·x for a batch of states ``s`` [B, N]; ``ux`` = U·x [B, N]."""
    r = activation(act, p["gain"] * (s + p["theta"]))
    return r @ p["W"].T + ux


def _step(
    p: dict[str, np.ndarray], s: np.ndarray, ux: np.ndarray, h: float, act: str, integrator: str
) -> np.ndarray:
    """Advance the states ``s`` [B, N] by one substep of length ``h`` with the input held."""
    tau = p["tau"]
    if integrator == "euler":
        a = h / tau
        return s + a * (-s + _drive(p, s, ux, act))
    if integrator == "exp_euler":
        a = h / tau
        decay = np.exp(-a)
        return decay * s + (1.0 - decay) * _drive(p, s, ux, act)
    if integrator == "rk4":

        def rhs(state: np.ndarray) -> np.ndarray:
            return (-state + _drive(p, state, ux, act)) / tau

        k1 = rhs(s)
        k2 = rhs(s + 0.5 * h * k1)
        k3 = rhs(s + 0.5 * h * k2)
        k4 = rhs(s + h * k3)
        return s + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    raise ValueError(f"unknown integrator {integrator!r}; expected one of {', '.join(INTEGRATORS)}")


def forward(
    params: Mapping[str, Any],
    x: np.ndarray,
    dts: np.ndarray | float,
    substeps: int,
    s0: np.ndarray | None,
    activation: str = "logistic",
    integrator: str = "euler",
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the CTRNN over a sequence of frames.

    Args:
        params: dict with W [N, N], tau [N], theta [N], gain [N], U [N, n_in], V [n_out, N] and
            c [n_out]. A ``mask`` entry, if present, is ignored (W is taken as already masked).
        x: inputs [B, T, n_in] (an unbatched [T, n_in] array is also accepted).
        dts: the T frame durations (> 0); a scalar is broadcast to every frame.
        substeps: number (≥ 1) of equal integration steps per frame.
        s0: start state [B, N] (or [N] for unbatched input); ``None`` means zeros.
        activation: ``logistic``, ``tanh``, ``relu`` or ``identity``.
        integrator: ``euler``, ``exp_euler`` or ``rk4``.

    Returns:
        ``(y, states)``: y [B, T, n_out] with y_k = V·s(t_{k+1}) + c, and the states at the end
        of every frame [B, T, N] (without the batch axis for unbatched input).
    """
    act = activation  # the argument shadows the module-level function of the same name
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}")
    if integrator not in INTEGRATORS:
        raise ValueError(
            f"unknown integrator {integrator!r}; expected one of {', '.join(INTEGRATORS)}"
        )
    p = _as_f64_params(params)
    n = p["W"].shape[0]
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"x must be [B, T, n_in] or [T, n_in], got shape {x.shape}")
    b, t_len, _ = x.shape
    dts = np.broadcast_to(np.asarray(dts, dtype=np.float64), (t_len,))
    if np.any(~(dts > 0.0)):
        raise ValueError("every frame duration in dts must be > 0")
    substeps = int(substeps)
    if substeps < 1:
        raise ValueError("substeps must be >= 1")
    if s0 is None:
        s = np.zeros((b, n))
    else:
        s = np.array(np.broadcast_to(np.asarray(s0, dtype=np.float64), (b, n)))

    states = np.empty((b, t_len, n))
    for k in range(t_len):
        ux = x[:, k, :] @ p["U"].T  # input drive, constant over the frame
        h = dts[k] / substeps
        for _ in range(substeps):
            s = _step(p, s, ux, h, act, integrator)
        states[:, k, :] = s
    y = states @ p["V"].T + p["c"]
    if unbatched:
        return y[0], states[0]
    return y, states


def mse_loss(
    params: Mapping[str, Any],
    x: np.ndarray,
    target: np.ndarray,
    dts: np.ndarray | float,
    substeps: int,
    s0: np.ndarray | None,
    activation: str = "logistic",
    integrator: str = "euler",
) -> float:
    """Mean over (batch, frames, outputs) of (y − target)², y from :func:`forward`."""
    y, _ = forward(params, x, dts, substeps, s0, activation=activation, integrator=integrator)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != y.shape:
        raise ValueError(f"target has shape {target.shape}, expected {y.shape}")
    return float(np.mean((y - target) ** 2))


def finite_difference_grad(
    params: Mapping[str, Any],
    x: np.ndarray,
    target: np.ndarray,
    dts: np.ndarray | float,
    substeps: int,
    s0: np.ndarray | None,
    activation: str = "logistic",
    integrator: str = "euler",
    eps: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Central-difference gradient of :func:`mse_loss` (full BPTT, no truncation).

    Every entry of W, tau, theta, gain, U, V, c and of the start state s0 is perturbed by ±eps
    (W is perturbed everywhere, masked entries included: mask gradients yourself if needed).

    Returns:
        dict with keys W, tau, theta, gain, U, V, c, s0, each shaped like the parameter
        (s0 like the start state; zeros of the batch shape when ``s0`` is None).
    """
    base = _as_f64_params(params)
    x = np.asarray(x, dtype=np.float64)
    n = base["W"].shape[0]
    batch_shape = (n,) if x.ndim == 2 else (x.shape[0], n)
    if s0 is None:
        s0_arr = np.zeros(batch_shape)
    else:
        s0_arr = np.array(np.broadcast_to(np.asarray(s0, dtype=np.float64), batch_shape))
    variables: dict[str, np.ndarray] = {**base, "s0": s0_arr}

    def loss() -> float:
        return mse_loss(
            variables, x, target, dts, substeps, variables["s0"], activation, integrator
        )

    grads: dict[str, np.ndarray] = {}
    for key, arr in variables.items():
        g = np.zeros_like(arr)
        flat = arr.reshape(-1)  # a view: editing it perturbs the variable in place
        gflat = g.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            plus = loss()
            flat[i] = orig - eps
            minus = loss()
            flat[i] = orig
            gflat[i] = (plus - minus) / (2.0 * eps)
        grads[key] = g
    return grads
