"""Cross-checks of the two independent CTRNN references (NumPy and PyTorch).

These tests need neither the Rust build nor a GPU: they validate the references themselves
against each other, against finite differences, against closed-form solutions and against the
expected orders of convergence, so that the engine tests can trust them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_CTRNN_DIR = Path(__file__).resolve().parents[2] / "python" / "rnnlab" / "ctrnn"


def _load(name: str) -> ModuleType:
    """Import ``rnnlab.ctrnn.<name>``, or load the file directly when the package cannot be
    imported (its ``__init__`` needs the Rust extension; the references do not)."""
    try:
        return importlib.import_module(f"rnnlab.ctrnn.{name}")
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            f"_rnnlab_ref_{name}", _CTRNN_DIR / f"{name}.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


ref = _load("reference")
tref = _load("torch_reference")

INTEGRATORS = ("euler", "exp_euler", "rk4")
ACTIVATIONS = ("logistic", "tanh", "relu", "identity")


def make_problem(
    seed: int, n: int = 6, n_in: int = 2, n_out: int = 3, b: int = 3, t: int = 7
) -> dict:
    """Random parameters (non-trivial tau/theta/gain/V/c), inputs, targets, irregular dts."""
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
    return {
        "params": params,
        "x": rng.normal(size=(b, t, n_in)),
        "target": rng.normal(size=(b, t, n_out)),
        "dts": rng.uniform(0.05, 0.4, t),
        "s0": rng.normal(size=(b, n)),
    }


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Norm-relative difference ||a − b|| / ||b|| (absolute when b is 0)."""
    denom = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (denom if denom > 0 else 1.0))


# --------------------------------------------------------------------------------------------
# forward: numpy vs torch


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_numpy_matches_torch(integrator: str, activation: str) -> None:
    pb = make_problem(0)
    y, states = ref.forward(
        pb["params"], pb["x"], pb["dts"], 3, pb["s0"], activation=activation, integrator=integrator
    )
    assert y.shape == (3, 7, 3)
    assert states.shape == (3, 7, 6)
    model = tref.TorchCTRNN.from_params(
        pb["params"], activation=activation, integrator=integrator, dtype=torch.float64
    )
    with torch.no_grad():
        yt, st = model(
            torch.from_numpy(pb["x"]), torch.from_numpy(pb["dts"]), 3, torch.from_numpy(pb["s0"])
        )
    np.testing.assert_allclose(yt.numpy(), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.numpy(), states, rtol=1e-12, atol=1e-12)
    # the output really is read from the end-of-frame state
    np.testing.assert_allclose(y, states @ pb["params"]["V"].T + pb["params"]["c"], atol=1e-14)


def test_forward_unbatched_and_float32_inputs() -> None:
    pb = make_problem(1, b=1)
    p32 = {k: v.astype(np.float32) for k, v in pb["params"].items()}
    y, st = ref.forward(p32, pb["x"][0].astype(np.float32), pb["dts"], 2, pb["s0"][0])
    yb, _ = ref.forward(p32, pb["x"], pb["dts"], 2, pb["s0"])
    assert y.dtype == np.float64
    assert y.shape == (7, 3)
    assert st.shape == (7, 6)
    np.testing.assert_allclose(y, yb[0], rtol=0, atol=1e-6)


def test_mask_is_ignored_by_numpy_and_applied_by_torch() -> None:
    pb = make_problem(2)
    rng = np.random.default_rng(2)
    mask = (rng.random((6, 6)) < 0.5).astype(float)
    masked = {**pb["params"], "W": pb["params"]["W"] * mask}
    y_np, _ = ref.forward({**masked, "mask": mask}, pb["x"], pb["dts"], 2, pb["s0"])
    # torch uses W * mask, so giving it the unmasked W and the mask is the same model
    model = tref.TorchCTRNN.from_params({**pb["params"], "mask": mask})
    with torch.no_grad():
        y_t, _ = model(torch.from_numpy(pb["x"]), pb["dts"], 2, torch.from_numpy(pb["s0"]))
    np.testing.assert_allclose(y_t.numpy(), y_np, rtol=1e-12, atol=1e-12)


def test_substeps_split_frames_exactly() -> None:
    """One frame of length 2h with 2 substeps == two frames of length h with 1 substep each."""
    pb = make_problem(3, t=4)
    x2 = np.repeat(pb["x"], 2, axis=1)
    for integrator in INTEGRATORS:
        y, _ = ref.forward(pb["params"], pb["x"], pb["dts"], 2, pb["s0"], integrator=integrator)
        _, st2 = ref.forward(
            pb["params"], x2, np.repeat(pb["dts"] / 2, 2), 1, pb["s0"], integrator=integrator
        )
        y2 = st2[:, 1::2] @ pb["params"]["V"].T + pb["params"]["c"]
        np.testing.assert_allclose(y, y2, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# gradients: torch autograd vs numpy finite differences


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_autograd_matches_finite_differences(integrator: str, activation: str) -> None:
    pb = make_problem(4, n=5, n_out=2, b=2, t=5)
    args = (pb["params"], pb["x"], pb["target"], pb["dts"], 2, pb["s0"], activation, integrator)
    loss, grads = tref.loss_and_grad(*args)
    assert loss == pytest.approx(ref.mse_loss(*args), rel=1e-12)
    fd = ref.finite_difference_grad(*args)
    assert set(grads) == set(fd) == {"W", "tau", "theta", "gain", "U", "V", "c", "s0"}
    for key in fd:
        assert grads[key].shape == fd[key].shape, key
        assert np.linalg.norm(fd[key]) > 0, key
        assert rel_err(grads[key], fd[key]) < 1e-6, (key, rel_err(grads[key], fd[key]))


def test_masked_w_gradient_is_zero_off_mask() -> None:
    pb = make_problem(5)
    mask = (np.random.default_rng(5).random((6, 6)) < 0.4).astype(float)
    params = {**pb["params"], "W": pb["params"]["W"] * mask, "mask": mask}
    _, grads = tref.loss_and_grad(params, pb["x"], pb["target"], pb["dts"], 2, pb["s0"])
    assert np.all(grads["W"][mask == 0] == 0.0)
    fd = ref.finite_difference_grad(params, pb["x"], pb["target"], pb["dts"], 2, pb["s0"])
    assert rel_err(grads["W"], fd["W"] * mask) < 1e-6


def test_unbatched_loss_and_grad() -> None:
    pb = make_problem(6, b=1)
    args = (pb["params"], pb["x"][0], pb["target"][0], pb["dts"], 2, pb["s0"][0])
    loss, grads = tref.loss_and_grad(*args)
    loss_b, grads_b = tref.loss_and_grad(
        pb["params"], pb["x"], pb["target"], pb["dts"], 2, pb["s0"]
    )
    assert loss == pytest.approx(loss_b, rel=1e-14)
    assert grads["s0"].shape == (6,)
    np.testing.assert_allclose(grads["s0"], grads_b["s0"][0], rtol=1e-13)
    np.testing.assert_allclose(grads["tau"], grads_b["tau"], rtol=1e-13)


# --------------------------------------------------------------------------------------------
# truncation


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_truncation_semantics(integrator: str) -> None:
    pb = make_problem(7, t=8)
    args = (pb["params"], pb["x"], pb["target"], pb["dts"], 2, pb["s0"], "tanh", integrator)
    loss_full, g_full = tref.loss_and_grad(*args)
    loss_k, g_k = tref.loss_and_grad(*args, truncation=3)
    assert loss_k == pytest.approx(loss_full, rel=1e-14)
    for key in ("W", "tau", "theta", "gain", "U", "s0"):
        assert rel_err(g_k[key], g_full[key]) > 1e-6, key
    # the readout gradient does not flow through time: truncation leaves it unchanged
    for key in ("V", "c"):
        np.testing.assert_allclose(g_k[key], g_full[key], rtol=1e-12, atol=1e-15)
    for big in (8, 9, 100):
        loss_b, g_b = tref.loss_and_grad(*args, truncation=big)
        assert loss_b == loss_full
        for key in g_full:
            np.testing.assert_allclose(g_b[key], g_full[key], rtol=1e-13, atol=1e-15)


def test_truncation_equals_sum_of_independent_chunks() -> None:
    """Truncated gradient == sum over chunks of the full gradient of each chunk's share of the
    loss, every chunk starting from the (constant) forward state at its first frame."""
    pb = make_problem(8, n=4, n_out=2, b=2, t=7)
    k_trunc, t_len, steps = 3, 7, 2
    params, x, target, dts = pb["params"], pb["x"], pb["target"], pb["dts"]
    _, g_trunc = tref.loss_and_grad(params, x, target, dts, steps, pb["s0"], truncation=k_trunc)

    _, states = ref.forward(params, x, dts, steps, pb["s0"])
    total = {key: np.zeros_like(v) for key, v in g_trunc.items()}
    for start in range(0, t_len, k_trunc):
        stop = min(start + k_trunc, t_len)
        chunk_s0 = pb["s0"] if start == 0 else states[:, start - 1]
        g = ref.finite_difference_grad(
            params, x[:, start:stop], target[:, start:stop], dts[start:stop], steps, chunk_s0
        )
        weight = (stop - start) / t_len  # chunk mean -> share of the mean over all T frames
        for key in total:
            if key != "s0" or start == 0:
                total[key] += weight * g[key]
    for key, expected in total.items():
        assert rel_err(g_trunc[key], expected) < 1e-6, (key, rel_err(g_trunc[key], expected))


# --------------------------------------------------------------------------------------------
# convergence orders


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_convergence_orders(activation: str) -> None:
    pb = make_problem(9, n=5, n_out=2, b=2, t=3)
    params = {**pb["params"], "W": pb["params"]["W"] * 1.5}
    dts = np.array([0.4, 0.25, 0.35])
    exact, _ = ref.forward(params, pb["x"], dts, 4096, pb["s0"], activation, "rk4")
    subs = np.array([2, 4, 8, 16])
    expected = {"euler": 1.0, "exp_euler": 1.0, "rk4": 4.0}
    for integrator, order in expected.items():
        errs = []
        for m in subs:
            y, _ = ref.forward(params, pb["x"], dts, int(m), pb["s0"], activation, integrator)
            errs.append(np.max(np.abs(y - exact)))
        slope = np.polyfit(np.log(1.0 / subs), np.log(errs), 1)[0]
        assert abs(slope - order) < 0.3 * order, (integrator, slope, errs)
        assert errs[-1] < errs[0]


def test_torch_convergence_matches_numpy() -> None:
    """The torch reference is the same discretisation at every step size, not just one."""
    pb = make_problem(10, t=3)
    model = tref.TorchCTRNN.from_params(pb["params"], activation="tanh", integrator="rk4")
    for m in (1, 5, 33):
        y, _ = ref.forward(pb["params"], pb["x"], pb["dts"], m, pb["s0"], "tanh", "rk4")
        with torch.no_grad():
            yt, _ = model(torch.from_numpy(pb["x"]), pb["dts"], m, torch.from_numpy(pb["s0"]))
        np.testing.assert_allclose(yt.numpy(), y, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# hand-derived closed forms (1 neuron, identity activation)


def one_neuron(w: float, tau: float, theta: float, gain: float, u: float, v: float, c: float):
    f = np.array
    return {
        "W": f([[w]]),
        "tau": f([tau]),
        "theta": f([theta]),
        "gain": f([gain]),
        "U": f([[u]]),
        "V": f([[v]]),
        "c": f([c]),
    }


def test_closed_form_leaky_integrator() -> None:
    """W = 0, constant input: s(t) = U x + (s0 − U x) e^{−t/τ}; exp_euler is exact at any h,
    euler and rk4 converge to it."""
    tau, u, v, c, xval, s0 = 0.7, 1.3, -0.8, 0.25, 0.9, -0.4
    params = one_neuron(0.0, tau, 0.3, 1.2, u, v, c)
    dts = np.array([0.1, 0.5, 0.05, 0.3, 1.1])
    x = np.full((1, 5, 1), xval)
    t_end = np.cumsum(dts)
    s_exact = u * xval + (s0 - u * xval) * np.exp(-t_end / tau)
    for act in ACTIVATIONS:  # W = 0: the activation must not matter
        for m in (1, 3):
            y, st = ref.forward(params, x, dts, m, np.array([[s0]]), act, "exp_euler")
            np.testing.assert_allclose(st[0, :, 0], s_exact, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(y[0, :, 0], v * s_exact + c, rtol=1e-13, atol=1e-15)
            with torch.no_grad():
                model = tref.TorchCTRNN.from_params(params, activation=act, integrator="exp_euler")
                _, stt = model(
                    torch.from_numpy(x), dts, m, torch.tensor([[s0]], dtype=torch.float64)
                )
            np.testing.assert_allclose(stt[0, :, 0].numpy(), s_exact, rtol=1e-13, atol=1e-15)
    _, st = ref.forward(params, x, dts, 400, np.array([[s0]]), "identity", "rk4")
    np.testing.assert_allclose(st[0, :, 0], s_exact, rtol=1e-12, atol=1e-13)
    _, st = ref.forward(params, x, dts, 4000, np.array([[s0]]), "identity", "euler")
    np.testing.assert_allclose(st[0, :, 0], s_exact, rtol=0, atol=1e-3)


def test_closed_form_tau_gradient() -> None:
    """For the leaky integrator with exp_euler (exact), y = V(Ux + (s0 − Ux)e^{−t/τ}) + c, so
    dL/dτ = 2 (y − target) V (s0 − Ux) e^{−t/τ} t / τ² for a single frame, and
    dL/ds0 = 2 (y − target) V e^{−t/τ}."""
    tau, u, v, c, xval, s0, t, target = 0.7, 1.3, -0.8, 0.25, 0.9, -0.4, 0.6, 0.1
    params = one_neuron(0.0, tau, 0.0, 1.0, u, v, c)
    decay = np.exp(-t / tau)
    y = v * (u * xval + (s0 - u * xval) * decay) + c
    loss, grads = tref.loss_and_grad(
        params,
        np.full((1, 1, 1), xval),
        np.full((1, 1, 1), target),
        np.array([t]),
        4,
        np.array([[s0]]),
        activation="identity",
        integrator="exp_euler",
    )
    assert loss == pytest.approx((y - target) ** 2, rel=1e-13)
    r = 2.0 * (y - target)
    assert grads["tau"][0] == pytest.approx(r * v * (s0 - u * xval) * decay * t / tau**2, rel=1e-12)
    assert grads["s0"][0, 0] == pytest.approx(r * v * decay, rel=1e-12)
    assert grads["c"][0] == pytest.approx(r, rel=1e-13)
    assert grads["U"][0, 0] == pytest.approx(r * v * xval * (1 - decay), rel=1e-12)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_closed_form_linear_recurrent_step_maps(integrator: str) -> None:
    """Identity activation, 1 neuron with self-coupling w: the ODE is linear,
    τ ds/dt = (wg − 1) s + wgθ + U x, with fixed point s* = (wgθ + Ux)/(1 − wg). Each substep
    maps s − s* to ρ(s − s*) with the hand-derived factor
    euler: 1 + λh;  rk4: 1 + λh + (λh)²/2 + (λh)³/6 + (λh)⁴/24;  exp_euler: e^{−a} + (1 − e^{−a})wg,
    where λ = (wg − 1)/τ and a = h/τ. Inputs change between frames, so s* does too."""
    w, tau, theta, gain, u, v, c = 0.6, 0.8, 0.4, 1.5, 1.1, 2.0, -0.3
    params = one_neuron(w, tau, theta, gain, u, v, c)
    dts = np.array([0.3, 0.05, 0.7, 0.2])
    xs = np.array([0.5, -1.0, 0.2, 1.7])
    substeps, s0 = 3, 0.35
    wg = w * gain
    lam = (wg - 1.0) / tau
    s = s0
    expected = []
    for dt, xval in zip(dts, xs, strict=True):
        h = dt / substeps
        s_star = (wg * theta + u * xval) / (1.0 - wg)
        if integrator == "euler":
            rho = 1.0 + lam * h
        elif integrator == "rk4":
            z = lam * h
            rho = 1.0 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
        else:
            a = h / tau
            rho = np.exp(-a) + (1.0 - np.exp(-a)) * wg
        s = s_star + rho**substeps * (s - s_star)
        expected.append(s)
    expected = np.array(expected)
    y, st = ref.forward(
        params, xs[None, :, None], dts, substeps, np.array([[s0]]), "identity", integrator
    )
    np.testing.assert_allclose(st[0, :, 0], expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(y[0, :, 0], v * expected + c, rtol=1e-13, atol=1e-14)
    model = tref.TorchCTRNN.from_params(params, activation="identity", integrator=integrator)
    with torch.no_grad():
        _, stt = model(
            torch.from_numpy(xs[None, :, None]),
            dts,
            substeps,
            torch.tensor([[s0]], dtype=torch.float64),
        )
    np.testing.assert_allclose(stt[0, :, 0].numpy(), expected, rtol=1e-13, atol=1e-14)


def test_reference_rejects_bad_names() -> None:
    pb = make_problem(11)
    with pytest.raises(ValueError, match="rk4"):
        ref.forward(pb["params"], pb["x"], pb["dts"], 1, pb["s0"], integrator="heun")
    with pytest.raises(ValueError, match="identity"):
        ref.forward(pb["params"], pb["x"], pb["dts"], 1, pb["s0"], activation="softsign")
    with pytest.raises(ValueError, match="rk4"):
        tref.TorchCTRNN.from_params(pb["params"], integrator="heun")
