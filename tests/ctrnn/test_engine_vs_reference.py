"""The Rust-backed public API (``rnnlab.ctrnn.CTRNN``) against the independent references.

Forward passes are compared with the NumPy reference (:mod:`rnnlab.ctrnn.reference`), gradients
with PyTorch autograd (:mod:`rnnlab.ctrnn.torch_reference`) and with central finite differences.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn import reference as ref

INTEGRATORS = ("euler", "exp_euler", "rk4")
ACTIVATIONS = ("logistic", "tanh", "relu", "identity")
GRAD_KEYS = {"W", "tau", "theta", "gain", "U", "V", "c", "s0"}
N, N_IN, N_OUT = 8, 2, 3


def tref() -> ModuleType:
    """The torch reference, skipping the test when torch is not installed."""
    pytest.importorskip("torch")
    from rnnlab.ctrnn import torch_reference

    return torch_reference


def random_params(
    seed: int, n: int = N, n_in: int = N_IN, n_out: int = N_OUT, density: float = 1.0
) -> dict[str, np.ndarray]:
    """Random float64 parameters with non-trivial tau/theta/gain/V/c and, if density < 1, a
    random mask (W is zero off the mask)."""
    rng = np.random.default_rng(seed)
    params = {
        "W": rng.normal(size=(n, n)) * 0.6,
        "tau": rng.uniform(0.3, 2.0, n),
        "theta": rng.normal(size=n) * 0.5,
        "gain": rng.uniform(0.5, 1.5, n),
        "U": rng.normal(size=(n, n_in)),
        "V": rng.normal(size=(n_out, n)),
        "c": rng.normal(size=n_out),
    }
    if density < 1.0:
        mask = np.zeros(n * n)
        mask[rng.choice(n * n, size=round(density * n * n), replace=False)] = 1.0
        mask = mask.reshape(n, n)
        params["W"] = params["W"] * mask
        params["mask"] = mask
    return params


def random_data(seed: int, b: int = 3, t: int = 7, n_in: int = N_IN, n_out: int = N_OUT):
    """Inputs [B, T, n_in], targets [B, T, n_out], irregular frame durations [T], s0 [B, N]."""
    rng = np.random.default_rng(seed + 1000)
    x = rng.normal(size=(b, t, n_in))
    target = rng.normal(size=(b, t, n_out))
    dts = rng.uniform(0.03, 0.4, t)
    s0 = rng.normal(size=(b, N))
    return x, target, dts, s0


def assert_grads_close(got: dict, want: dict, rtol: float = 1e-8, atol: float = 1e-12) -> None:
    """Every gradient element-wise close and, more robustly, close in norm."""
    assert set(got) >= GRAD_KEYS, f"missing gradient keys {GRAD_KEYS - set(got)}"
    for key in sorted(GRAD_KEYS):
        g, w = np.asarray(got[key]), np.asarray(want[key])
        assert g.shape == w.shape, (key, g.shape, w.shape)
        rel = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-300)
        assert rel < rtol * 10, f"{key}: norm-relative error {rel:.3e}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=key)


# --------------------------------------------------------------------------------------------
# forward, float64


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_reference(activation: str, integrator: str, b: int) -> None:
    params = random_params(1)
    x, _, dts, s0 = random_data(1, b=b)
    net = CTRNN.from_params(params, activation=activation, integrator=integrator, readout="linear")
    y, states = net.run(x, dt=dts, substeps=3, return_states=True, s0=s0)
    y_ref, states_ref = ref.forward(params, x, dts, 3, s0, activation, integrator)
    assert y.shape == (b, 7, N_OUT)
    assert states.shape == (b, 7, N)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states, states_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_single_sequence_split_over_neurons_matches_reference(integrator: str) -> None:
    """One sequence of a wide network: with 2 threads the kernel splits the neurons (N >= 256),
    and must still match the reference and the one-thread kernel's states bit for bit."""
    n = 600
    rng = np.random.default_rng(7)
    params = random_params(7, n=n)
    params["W"] = rng.normal(size=(n, n)) * 1.5 / np.sqrt(n)
    x = rng.normal(size=(1, 6, N_IN))
    dts = rng.uniform(0.05, 0.2, 6)
    s0 = rng.normal(size=(1, n))
    split, one = (
        CTRNN.from_params(
            params, activation="tanh", integrator=integrator, readout="linear", threads=threads
        )
        for threads in (2, 1)
    )
    y, states = split.run(x, dt=dts, substeps=3, return_states=True, s0=s0)
    y_one, states_one = one.run(x, dt=dts, substeps=3, return_states=True, s0=s0)
    y_ref, states_ref = ref.forward(params, x, dts, 3, s0, "tanh", integrator)
    np.testing.assert_allclose(states, states_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(y, y_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_array_equal(states, states_one)
    np.testing.assert_allclose(y, y_one, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_forward_irregular_times(integrator: str) -> None:
    params = random_params(2)
    x, _, dts, s0 = random_data(2, b=2, t=9)
    times = 0.37 + np.concatenate([[0.0], np.cumsum(dts)])  # T+1 boundaries, t_0 != 0
    net = CTRNN.from_params(params, activation="tanh", integrator=integrator, readout="linear")
    y, states = net.run(x, times=times, substeps=2, return_states=True, s0=s0)
    y_ref, states_ref = ref.forward(params, x, np.diff(times), 2, s0, "tanh", integrator)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states, states_ref, rtol=1e-12, atol=1e-12)


def test_forward_unbatched_input() -> None:
    params = random_params(3)
    x, _, dts, s0 = random_data(3, b=1)
    net = CTRNN.from_params(params, activation="logistic", integrator="rk4", readout="linear")
    y, states = net.run(x[0], dt=dts, substeps=2, return_states=True, s0=s0[0])
    assert y.shape == (7, N_OUT)
    assert states.shape == (7, N)
    y_ref, states_ref = ref.forward(params, x, dts, 2, s0, "logistic", "rk4")
    np.testing.assert_allclose(y, y_ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states, states_ref[0], rtol=1e-12, atol=1e-12)
    # without return_states only y comes back; reset() zeroes the start state
    net.reset()
    y0 = net.run(x[0], dt=dts, substeps=2)
    y0_ref, _ = ref.forward(params, x[0], dts, 2, np.zeros(N), "logistic", "rk4")
    np.testing.assert_allclose(y0, y0_ref, rtol=1e-12, atol=1e-12)


def test_scalar_dt_is_every_frame() -> None:
    params = random_params(4)
    x, _, _, s0 = random_data(4)
    net = CTRNN.from_params(params, activation="tanh", integrator="exp_euler", readout="linear")
    y = net.run(x, dt=0.1, substeps=10, s0=s0)
    y_ref, _ = ref.forward(params, x, np.full(7, 0.1), 10, s0, "tanh", "exp_euler")
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)


def test_run_continues_from_state() -> None:
    params = random_params(5)
    x, _, dts, _ = random_data(5, b=2, t=8)
    net = CTRNN.from_params(params, activation="logistic", integrator="euler", readout="linear")
    net.reset()
    y_a = net.run(x[:, :3], dt=dts[:3], substeps=2)
    y_b = net.run(x[:, 3:], dt=dts[3:], substeps=2)
    y_ref, _ = ref.forward(params, x, dts, 2, np.zeros((2, N)), "logistic", "euler")
    np.testing.assert_allclose(np.concatenate([y_a, y_b], axis=1), y_ref, rtol=1e-12, atol=1e-12)
    net.reset()
    y_again = net.run(x[:, :3], dt=dts[:3], substeps=2)
    np.testing.assert_allclose(y_again, y_a, rtol=0, atol=0)


def test_pick_readout_reads_last_neurons() -> None:
    net = CTRNN(n_neurons=N, n_inputs=N_IN, n_outputs=N_OUT, seed=7, readout="pick")
    v = np.asarray(net.params["V"])
    expected = np.zeros((N_OUT, N))
    expected[np.arange(N_OUT), np.arange(N - N_OUT, N)] = 1.0
    np.testing.assert_array_equal(v, expected)
    x, _, dts, s0 = random_data(7)
    y, states = net.run(x, dt=dts, substeps=2, return_states=True, s0=s0)
    np.testing.assert_allclose(y, states[..., N - N_OUT :], rtol=0, atol=1e-15)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    y_ref, _ = ref.forward(p, x, dts, 2, s0, "logistic", "euler")
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)


def test_constructor_parameters_and_seeding() -> None:
    kw = dict(n_neurons=10, n_inputs=3, n_outputs=2, density=0.3, readout="linear")
    net = CTRNN(seed=11, tau=0.5, theta=-0.2, gain=1.3, **kw)
    p = net.params
    assert {"W", "mask", "tau", "theta", "gain", "U", "V", "c"} <= set(p)
    mask, w = np.asarray(p["mask"]), np.asarray(p["W"])
    assert w.shape == mask.shape == (10, 10)
    assert np.count_nonzero(mask) == round(0.3 * 100)
    assert np.all(w[mask == 0] == 0.0)
    np.testing.assert_allclose(p["tau"], np.full(10, 0.5))
    np.testing.assert_allclose(p["theta"], np.full(10, -0.2))
    np.testing.assert_allclose(p["gain"], np.full(10, 1.3))
    assert np.asarray(p["U"]).shape == (10, 3)
    assert np.asarray(p["V"]).shape == (2, 10)
    np.testing.assert_array_equal(p["c"], np.zeros(2))
    # Xavier-uniform bounds: fan_in = fan_out = density * N for W; (n_in, N) for U
    assert np.max(np.abs(w)) <= np.sqrt(6.0 / (2 * 0.3 * 10))
    assert np.max(np.abs(np.asarray(p["U"]))) <= np.sqrt(6.0 / (3 + 10))
    same = CTRNN(seed=11, tau=0.5, theta=-0.2, gain=1.3, **kw).params
    other = CTRNN(seed=12, tau=0.5, theta=-0.2, gain=1.3, **kw).params
    for key in ("W", "mask", "U", "V"):
        np.testing.assert_array_equal(same[key], p[key])
    assert not np.array_equal(other["W"], p["W"])


def test_assigning_params_takes_effect() -> None:
    net = CTRNN(n_neurons=N, n_inputs=N_IN, n_outputs=N_OUT, seed=8, readout="linear")
    new = random_params(8)
    for key in ("tau", "theta", "gain", "U", "V", "c"):
        net.params[key] = new[key]
    x, _, dts, s0 = random_data(8)
    y = net.run(x, dt=dts, substeps=2, s0=s0)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    y_ref, _ = ref.forward(p, x, dts, 2, s0, "logistic", "euler")
    np.testing.assert_allclose(p["tau"], new["tau"])
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# forward, float32


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_float32_forward_close_to_reference(integrator: str) -> None:
    net = CTRNN(
        n_neurons=N,
        n_inputs=N_IN,
        n_outputs=N_OUT,
        density=0.5,
        activation="tanh",
        integrator=integrator,
        dtype="float32",
        seed=9,
        readout="linear",
        tau=0.5,
        theta=-0.2,
        gain=1.3,
    )
    x, _, dts, s0 = random_data(9, t=10)
    y, states = net.run(
        x.astype(np.float32), dt=dts, substeps=5, return_states=True, s0=s0.astype(np.float32)
    )
    assert np.asarray(y).dtype == np.float32
    p = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    x32 = x.astype(np.float32).astype(np.float64)
    s032 = s0.astype(np.float32).astype(np.float64)
    y_ref, states_ref = ref.forward(p, x32, dts, 5, s032, "tanh", integrator)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(states, states_ref, rtol=1e-4, atol=1e-5)


def test_float32_gradients_close_to_reference() -> None:
    net = CTRNN(
        n_neurons=N,
        n_inputs=N_IN,
        n_outputs=N_OUT,
        dtype="float32",
        seed=10,
        readout="linear",
        tau=0.7,
        theta=0.1,
        gain=1.2,
    )
    x, target, dts, s0 = random_data(10)
    x, target, s0 = (a.astype(np.float32) for a in (x, target, s0))
    loss, grads = net.loss_and_grad(x, target, dt=dts, substeps=2, s0=s0)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    loss_ref, g_ref = tref().loss_and_grad(p, x, target, dts, 2, s0, "logistic", "euler")
    assert loss == pytest.approx(loss_ref, rel=1e-4)
    for key in sorted(GRAD_KEYS):
        g, w = np.asarray(grads[key], dtype=np.float64), g_ref[key]
        assert np.linalg.norm(g - w) <= 1e-3 * np.linalg.norm(w) + 1e-6, key


# --------------------------------------------------------------------------------------------
# gradients, float64


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_torch(activation: str, integrator: str) -> None:
    params = random_params(20, density=0.6)
    x, target, dts, s0 = random_data(20)
    net = CTRNN.from_params(params, activation=activation, integrator=integrator, readout="linear")
    loss, grads = net.loss_and_grad(x, target, dt=dts, substeps=3, s0=s0)
    loss_ref, g_ref = tref().loss_and_grad(params, x, target, dts, 3, s0, activation, integrator)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert loss == pytest.approx(
        ref.mse_loss(params, x, target, dts, 3, s0, activation, integrator), rel=1e-12
    )
    assert_grads_close(grads, g_ref)
    # masked synapses get exactly zero gradient
    assert np.all(np.asarray(grads["W"])[params["mask"] == 0] == 0.0)
    assert np.count_nonzero(np.asarray(grads["W"])[params["mask"] == 1]) > 0


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_gradients_with_truncation(integrator: str) -> None:
    params = random_params(21, density=0.7)
    x, target, dts, s0 = random_data(21, t=12)
    net = CTRNN.from_params(params, activation="tanh", integrator=integrator, readout="linear")
    loss_full, g_full = net.loss_and_grad(x, target, dt=dts, substeps=2, s0=s0)
    loss_k, g_k = net.loss_and_grad(x, target, dt=dts, substeps=2, truncation=5, s0=s0)
    _, g_ref = tref().loss_and_grad(params, x, target, dts, 2, s0, "tanh", integrator, 5)
    assert loss_k == pytest.approx(loss_full, rel=1e-13)
    assert_grads_close(g_k, g_ref)
    assert np.linalg.norm(np.asarray(g_k["W"]) - np.asarray(g_full["W"])) > 1e-8
    # truncation >= T is full BPTT
    _, g_long = net.loss_and_grad(x, target, dt=dts, substeps=2, truncation=12, s0=s0)
    assert_grads_close(g_long, g_full, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_gradients_match_finite_differences(integrator: str) -> None:
    params = random_params(22, density=0.5)
    x, target, dts, s0 = random_data(22, b=2, t=6)
    net = CTRNN.from_params(params, activation="logistic", integrator=integrator, readout="linear")
    _, grads = net.loss_and_grad(x, target, dt=dts, substeps=2, s0=s0)
    fd = ref.finite_difference_grad(params, x, target, dts, 2, s0, "logistic", integrator)
    fd["W"] = fd["W"] * params["mask"]
    for key in sorted(GRAD_KEYS):
        g = np.asarray(grads[key])
        rel = np.linalg.norm(g - fd[key]) / np.linalg.norm(fd[key])
        assert rel < 1e-6, f"{key}: {rel:.3e}"


def test_loss_and_grad_defaults_to_zero_start_state() -> None:
    params = random_params(23)
    x, target, dts, _ = random_data(23)
    net = CTRNN.from_params(params, activation="tanh", integrator="rk4", readout="linear")
    net.run(x, dt=dts, substeps=2)  # moves net.state away from zero
    loss, grads = net.loss_and_grad(x, target, dt=dts, substeps=2)
    loss_ref, g_ref = tref().loss_and_grad(
        params, x, target, dts, 2, np.zeros((3, N)), "tanh", "rk4"
    )
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert_grads_close(grads, g_ref)


def test_scalar_dt_gradients() -> None:
    params = random_params(24)
    x, target, _, s0 = random_data(24)
    net = CTRNN.from_params(params, activation="relu", integrator="exp_euler", readout="linear")
    _, grads = net.loss_and_grad(x, target, dt=0.1, substeps=2, s0=s0)
    _, g_ref = tref().loss_and_grad(params, x, target, np.full(7, 0.1), 2, s0, "relu", "exp_euler")
    assert_grads_close(grads, g_ref)
