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


def test_learning_flags_are_respected():
    _compare(_params(model_type="PAL"), 400, flags=(False, True, False))
    _compare(_params(model_type="DTPDRL"), 400, flags=(True, False, True), with_target=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "noise_type", "topology"), list(itertools.product(MODELS, NOISE_TYPES, TOPOLOGIES))
)
def test_fast_equals_reference_10000_steps(model, noise_type, topology):
    params = _params(model_type=model, noise_type=noise_type, bw_connection_mode=topology)
    _compare(params, 10_000, with_target=model in ("BP", "PAL"))
