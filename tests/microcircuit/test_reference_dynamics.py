"""Hand-checked steady states of the reference dynamics and the self-predicting state."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.microcircuit.fast import FastKernel
from rnnlab.microcircuit.network import Layout, Options, activation, init_batch
from rnnlab.microcircuit.params import params_from_dict
from rnnlab.microcircuit.reference import reference_run

GL, GBAS, GAPI, GDEN, GNI, GNTGT = 0.03, 0.1, 0.06, 0.1, 0.06, 0.06


def _one_one_one(a, b, c, d, e):
    params = params_from_dict(
        {"layers": [1, 1, 1], "activation": "linear", "model_type": "FA", "init_in_SPS": False}
    )
    opts, layout, state = init_batch(params, [3])
    views = layout.views(state[0])
    views["W"][0][...] = a
    views["W"][1][...] = b
    views["B"][0][...] = c
    views["BPI"][0][...] = d
    views["WIP"][0][...] = e
    return opts, layout, state, views


def _hand_steady_state(a, b, c, d, e, x, target=None):
    """Linear steady state written out from §1.5 of the note:
    u1 = kh·a·x + gapi/gh·(c·u2 + d·uI);  uI = (gden·e·u1 + gnI·u2)/gI;
    u2 = kN·b·u1 (free) or (gbas·b·u1 + gntgt·t)/gout (nudged)."""
    gh, gout, gi = GL + GBAS + GAPI, GL + GBAS + GNTGT, GL + GDEN + GNI
    kh, kn = GBAS / gh, GBAS / (GL + GBAS)
    # unknowns (u1, u2, uI): M @ u = rhs
    m = np.array(
        [
            [1.0, -GAPI / gh * c, -GAPI / gh * d],
            [-kn * b if target is None else -GBAS * b / gout, 1.0, 0.0],
            [-GDEN * e / gi, -GNI / gi, 1.0],
        ]
    )
    rhs = np.array([kh * a * x, 0.0 if target is None else GNTGT * target / gout, 0.0])
    return np.linalg.solve(m, rhs)


@pytest.mark.parametrize("target", [None, 0.7])
def test_linear_steady_state_matches_hand_solution(target):
    a, b, c, d, e, x = 1.3, -0.8, 0.5, -0.2, 0.9, 0.6
    opts, layout, state, _views = _one_one_one(a, b, c, d, e)
    steps = 20_000
    inputs = np.full((1, steps, 1), x)
    targets = None if target is None else np.full((1, steps, 1), target)
    fast_state = state.copy()
    FastKernel(opts, layout).run(
        fast_state,
        inputs,
        targets,
        seeds=[3],
        step0=0,
        learn_fw=False,
        learn_lat=False,
        learn_bw=False,
    )
    u1, u2, uI = _hand_steady_state(a, b, c, d, e, x, target)
    fast = layout.views(fast_state[0])
    np.testing.assert_allclose(
        [fast["u"][0][0], fast["u"][1][0], fast["uI"][0][0]], [u1, u2, uI], atol=1e-9
    )
    # at the fixed point the prospective voltage equals the voltage
    np.testing.assert_allclose(fast["u_breve"][1][0], u2, atol=1e-9)
    # (the numpy reference equals this kernel to 1e-10: test_fast_vs_reference.py)


def test_hidden_steady_state_formula():
    """u* = kh·vbas + gapi/gh·vapi, output free u* = kN·vbas, interneuron nudged by ŭ above."""
    params = params_from_dict(
        {"layers": [3, 4, 2], "activation": "logistic", "model_type": "FA", "init_in_SPS": False}
    )
    opts, layout, state = init_batch(params, [11])
    inputs = np.tile(np.array([0.2, 0.9, 0.4]), (1, 20_000, 1))
    FastKernel(opts, layout).run(
        state, inputs, None, seeds=[11], step0=0, learn_fw=False, learn_lat=False, learn_bw=False
    )
    v = layout.views(state[0])
    gh = GL + GBAS + GAPI
    np.testing.assert_allclose(
        v["u"][0], GBAS / gh * v["vbas"][0] + GAPI / gh * v["vapi"][0], atol=1e-9
    )
    np.testing.assert_allclose(v["u"][1], GBAS / (GL + GBAS) * v["vbas"][1], atol=1e-9)
    gi = GL + GDEN + GNI
    np.testing.assert_allclose(
        v["uI"][0], (GDEN * v["vden"][0] + GNI * v["u_breve"][1]) / gi, atol=1e-9
    )


def test_self_predicting_state_silences_the_apical_compartment():
    params = params_from_dict(
        {
            "layers": [5, 20, 10, 20, 5],
            "activation": "logistic",
            "model_type": "FA",
            "init_in_SPS": True,
            "random_seed": [1, 2],
        }
    )
    opts, layout, state = init_batch(params, params.seeds)
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 5))
    inputs = np.repeat(x, 800, axis=1)
    reference_run(
        opts,
        layout,
        state,
        inputs,
        None,
        seeds=params.seeds,
        step0=0,
        learn_fw=False,
        learn_lat=False,
        learn_bw=False,
    )
    for b in range(2):
        v = layout.views(state[b])
        for h in range(layout.n_hidden):
            assert np.max(np.abs(v["vapi"][h])) < 1e-10
            # the interneurons reproduce the rates of the layer above
            np.testing.assert_allclose(v["rI"][h], v["r"][h + 1], atol=1e-8)
    # with a target the output moves and the apical compartments carry the error
    targets = np.full((2, 800, 5), 0.9)
    reference_run(
        opts,
        layout,
        state,
        inputs,
        targets,
        seeds=params.seeds,
        step0=800,
        learn_fw=False,
        learn_lat=False,
        learn_bw=False,
    )
    assert np.max(np.abs(layout.views(state[0])["vapi"][2])) > 1e-3


def test_activations_are_overflow_free_and_correct():
    x = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    np.testing.assert_allclose(activation("logistic", x)[1:4], 1 / (1 + np.exp(-x[1:4])))
    np.testing.assert_allclose(activation("soft_relu", x)[1:4], np.log1p(np.exp(x[1:4])))
    assert activation("logistic", x)[0] == 0.0
    assert activation("soft_relu", x)[-1] == 800.0
    np.testing.assert_allclose(activation("hard_sigmoid", x), [0, 0, 0.5, 2 / 6 + 0.5, 1])


def test_layout_views_are_disjoint_and_cover_the_row():
    for skip in (False, True):
        layout = Layout([3, 4, 5, 2], skip=skip)
        marks = np.zeros(layout.size, dtype=int)
        for items in layout.entries.values():
            for offset, shape in items:
                marks[offset : offset + int(np.prod(shape))] += 1
        assert np.all(marks == 1)
    opts = Options.from_params(params_from_dict({"layers": [2, 2, 2]}))
    assert opts.k_hidden == pytest.approx(GBAS / (GL + GBAS + GAPI))
