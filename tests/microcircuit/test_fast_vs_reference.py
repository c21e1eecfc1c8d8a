"""The Rust kernel equals the numpy reference (same counter-based noise) for every model,
noise type, topology and option: 400 steps by default, 10 000 steps under ``-m slow``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnlab import _native
from rnnlab.microcircuit.fast import FastKernel
from rnnlab.microcircuit.network import counter_normals, init_batch
from rnnlab.microcircuit.params import params_from_dict
from rnnlab.microcircuit.reference import reference_run

MODELS = ("BP", "FA", "PAL", "DTPDRL")
NOISE_TYPES = ("OU", "OU_euler", "hold_white_noise")
TOPOLOGIES = ("layered", "skip")


def _params(**overrides):
    base = {
        "layers": [3, 4, 3, 2],
        "activation": ["logistic", "tanh", "soft_relu"],
        "random_seed": [5, 17],
        "eta_fw": [0.5, 0.3, 0.2],
        "eta_bw": [5.0, 3.0],
        "eta_IP": [1.0, 0.5],
        "eta_PI": [0.5, 0.4],
        "alpha": [1e-2, 1e-2],
        "noise_scale": [0.2, 0.1],
        "tauxi": 0.05,
        "tauHP": 0.1,
        "tauLO": 1.0,
        "dWPP_low_pass": True,
    }
    base.update(overrides)
    if base.get("bw_connection_mode") == "skip":
        base["eta_IP"] = base["eta_IP"][:1]
    return params_from_dict(base)


def _compare(params, steps, *, with_target=True, flags=(True, True, True), step0=0):
    opts, layout, state = init_batch(params, params.seeds)
    rng = np.random.default_rng(1)
    batch = len(params.seeds)
    samples = rng.uniform(0, 1, (batch, steps // 50 + 1, layout.n_input))
    inputs = np.repeat(samples, 50, axis=1)[:, :steps]
    targets = None
    if with_target:
        targets = np.repeat(rng.uniform(0, 1, (batch, steps // 50 + 1, layout.n[-1])), 50, axis=1)
        targets = np.ascontiguousarray(targets[:, :steps])
    fast_state = state.copy()
    learn = dict(zip(("learn_fw", "learn_lat", "learn_bw"), flags, strict=True))
    ref_err = reference_run(
        opts, layout, state, inputs, targets, seeds=params.seeds, step0=step0, **learn
    )
    kernel = FastKernel(opts, layout)
    fast_err = kernel.run(fast_state, inputs, targets, seeds=params.seeds, step0=step0, **learn)
    np.testing.assert_allclose(fast_state, state, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fast_err, ref_err, rtol=1e-10, atol=1e-10)
    return state


def test_counter_normals_match_the_kernel_generator():
    for seed, step in ((0, 0), (123, 99), (2**40 + 7, 10**9)):
        np.testing.assert_allclose(
            _native.microcircuit_normals(seed, step, 37),
            counter_normals(seed, step, 37),
            rtol=1e-14,
            atol=1e-15,
        )
    many = counter_normals(9, 4, 100_000)
    assert abs(many.mean()) < 0.02
    assert abs(many.var() - 1) < 0.02


@pytest.mark.parametrize(
    ("model", "noise_type", "topology"), list(itertools.product(MODELS, NOISE_TYPES, TOPOLOGIES))
)
def test_fast_equals_reference(model, noise_type, topology):
    params = _params(model_type=model, noise_type=noise_type, bw_connection_mode=topology)
    state = _compare(params, 400, with_target=model in ("BP", "PAL"))
    assert np.all(np.isfinite(state))


@pytest.mark.parametrize(
    "overrides",
    [
        {"noise_mode": "uP", "Tbw": 0.2, "dtxi": 0.03, "model_type": "PAL"},
        {"noise_mode": "uP_breve", "gate_regularizer": True, "model_type": "PAL"},
        {"noise_mode": "vapi", "varphi_regularizer": True, "model_type": "PAL"},
        {"pyr_hi_pass": False, "model_type": "DTPDRL", "inter_low_pass": True},
        {"dWPP_use_activation": False, "dWPP_low_pass": False, "taur": 0.0, "model_type": "PAL"},
        {
            "activation": ["relu", "hard_sigmoid", "linear"],
            "model_type": "PAL",
            "OU_variance": "sigma^2",
        },
    ],
)
def test_fast_equals_reference_options(overrides):
    _compare(_params(**overrides), 400, step0=37)


# weight blocks by the learning flag that gates them (learn_fw, learn_lat, learn_bw); BP and FA
# copy or keep B, so the flags are checked on the models that learn B
FLAG_BLOCKS = {"learn_fw": ("W",), "learn_lat": ("WIP", "BPI"), "learn_bw": ("B",)}


@pytest.mark.parametrize(
    ("model", "flags", "with_target"),
    [("PAL", (False, True, False), True), ("DTPDRL", (True, False, True), False)],
)
def test_learning_flags_are_respected(model, flags, with_target):
    params = _params(model_type=model)
    _opts, layout, initial = init_batch(params, params.seeds)
    final = _compare(params, 400, flags=flags, with_target=with_target)
    before, after = layout.batch_views(initial), layout.batch_views(final)
    for flag, on in zip(("learn_fw", "learn_lat", "learn_bw"), flags, strict=True):
        for name in FLAG_BLOCKS[flag]:
            for old, new in zip(before[name], after[name], strict=True):
                if on:
                    assert np.max(np.abs(new - old)) > 1e-6, f"{name} did not learn ({flag}=True)"
                else:
                    message = f"{name} changed ({flag}=False)"
                    np.testing.assert_array_equal(new, old, err_msg=message)


def _one_step(params, state, *, kernel: bool):
    """One learning step from ``state`` (in place) by the Rust kernel or the numpy reference."""
    opts, layout, _ = init_batch(params, params.seeds)
    batch = len(params.seeds)
    inputs = np.full((batch, 1, layout.n_input), 0.5)
    targets = np.full((batch, 1, layout.n[-1]), 0.5)
    learn = {"learn_fw": True, "learn_lat": True, "learn_bw": True}
    if kernel:
        FastKernel(opts, layout).run(state, inputs, targets, seeds=params.seeds, step0=0, **learn)
    else:
        reference_run(opts, layout, state, inputs, targets, seeds=params.seeds, step0=0, **learn)
    return layout


@pytest.mark.parametrize("kernel", [True, False], ids=["rust", "numpy"])
def test_a_network_at_rest_has_exactly_zero_high_passed_rates(kernel):
    """At rest (u = u_prev) the first step changes no rate, so r̃ stays exactly 0, also when the
    stored rates came from another math library (here: every stored rate one ulp off, as numpy's
    SIMD φ can be against the kernel's on another CPU). Without that, the gate regulariser's
    mask 𝟙[r̃ > 0] below flips on rounding noise."""
    params = _params(model_type="PAL", gate_regularizer=True)
    _opts, layout, state = init_batch(params, params.seeds)
    for rates in (*layout.batch_views(state)["r"], *layout.batch_views(state)["rI"]):
        rates[...] = np.nextafter(rates, np.inf)
    layout = _one_step(params, state, kernel=kernel)
    for rhp in layout.batch_views(state)["rhp"]:
        np.testing.assert_array_equal(rhp, 0.0)


@pytest.mark.parametrize("kernel", [True, False], ids=["rust", "numpy"])
@pytest.mark.parametrize("r_tilde", [0.0, -1e-300, 1e-300])
def test_gate_regularizer_at_the_tie(kernel, r_tilde):
    """The gate regulariser α·B·𝟙[r̃ > 0] is off at exactly r̃ = 0 (and below), on above: with
    every high-passed rate set to ``r_tilde``, one step changes B by exactly
    dt·η·(ξ ⊗ r̃ − α·B·𝟙[r̃ > 0]), hand-derived here from the state before and after."""
    params = _params(model_type="PAL", gate_regularizer=True)
    opts, layout, state = init_batch(params, params.seeds)
    for rhp in layout.batch_views(state)["rhp"]:
        rhp[...] = r_tilde
    B_before = [b.copy() for b in layout.batch_views(state)["B"]]
    _one_step(params, state, kernel=kernel)
    for h, (old, new) in enumerate(zip(B_before, layout.batch_views(state)["B"], strict=True)):
        gate = 1.0 if r_tilde > 0 else 0.0
        expected = old - opts.dt * opts.eta_bw[h] * opts.alpha[h] * old * gate
        np.testing.assert_allclose(new, expected, rtol=1e-13, atol=1e-300)
        if gate == 0.0:
            np.testing.assert_array_equal(new, old)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "noise_type", "topology"), list(itertools.product(MODELS, NOISE_TYPES, TOPOLOGIES))
)
def test_fast_equals_reference_10000_steps(model, noise_type, topology):
    params = _params(model_type=model, noise_type=noise_type, bw_connection_mode=topology)
    _compare(params, 10_000, with_target=model in ("BP", "PAL"))
