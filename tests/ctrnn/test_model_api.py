"""Behaviour of the CTRNN class: state handling, initialisation, persistence, training rules."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import rnnlab
from rnnlab.ctrnn import CTRNN


def _inputs(frames: int = 30, n_in: int = 2, batch: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (frames, n_in) if batch is None else (batch, frames, n_in)
    return rng.normal(size=shape)


def test_run_continues_from_the_running_state_and_reset_restarts() -> None:
    net = CTRNN(10, 2, 2, integrator="rk4", seed=3)
    x = _inputs(40)
    whole = net.run(x, dt=0.1, substeps=3)
    net.reset()
    first = net.run(x[:15], dt=0.1, substeps=3)
    second = net.run(x[15:], dt=0.1, substeps=3)
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    net.reset()
    np.testing.assert_array_equal(net.run(x, dt=0.1, substeps=3), whole)
    # An explicit s0 overrides the running state.
    s0 = np.linspace(-1, 1, 10)
    net.run(x, dt=0.1, s0=s0)
    with_state = net.run(x[:5], dt=0.1)
    from_s0 = net.run(x[:5], dt=0.1, s0=net.run(x, dt=0.1, s0=s0, return_states=True)[1][-1])
    np.testing.assert_array_equal(with_state, from_s0)


def test_batched_run_equals_row_by_row_runs() -> None:
    net = CTRNN(9, 3, 2, activation="tanh", seed=1)
    x = _inputs(25, 3, batch=4)
    y = net.run(x, dt=0.05, substeps=2, s0=np.zeros((4, 9)))
    for b in range(4):
        np.testing.assert_allclose(
            net.run(x[b], dt=0.05, substeps=2, s0=np.zeros(9)), y[b], rtol=1e-13
        )


def test_batch_of_twelve_takes_the_gemm_path_and_agrees_with_single_rows() -> None:
    net = CTRNN(20, 2, 3, integrator="exp_euler", seed=2)
    x = _inputs(12, 2, batch=12)
    y = net.run(x, dt=0.1, s0=np.zeros(20))
    for b in (0, 7, 11):
        np.testing.assert_allclose(
            net.run(x[b], dt=0.1, s0=np.zeros(20)), y[b], rtol=1e-12, atol=1e-14
        )


def test_initialisation_is_seeded_masked_and_within_the_xavier_bound() -> None:
    a, b, c = (
        CTRNN(40, 3, 2, density=0.25, seed=7),
        CTRNN(40, 3, 2, density=0.25, seed=7),
        CTRNN(40, 3, 2, density=0.25, seed=8),
    )
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert not np.array_equal(a.params["W"], c.params["W"])
    mask = a.params["mask"]
    assert int(mask.sum()) == round(0.25 * 40 * 40)
    assert np.all(a.params["W"][mask == 0] == 0)
    fan = 0.25 * 40
    assert np.abs(a.params["W"]).max() <= math.sqrt(6 / (2 * fan))
    assert np.abs(a.params["U"]).max() <= math.sqrt(6 / (3 + 40))
    # Pick readout reads the last n_outputs neurons.
    np.testing.assert_array_equal(a.params["V"].argmax(axis=1), [38, 39])


def test_masked_weights_stay_exactly_zero_through_training() -> None:
    net = CTRNN(12, 1, 1, density=0.3, readout="linear", seed=0)
    x, target = np.ones((40, 1)), np.sin(np.linspace(0, 3, 40))[:, None]
    zero = net.params["mask"] == 0
    net.fit(x, target, dt=0.1, epochs=30, lr=0.05)
    assert np.all(net.params["W"][zero] == 0.0)
    assert np.any(net.params["W"][~zero] != 0.0)


def test_only_trainable_parameters_change_and_tau_stays_above_tau_min() -> None:
    net = CTRNN(8, 1, 1, readout="linear", trainable={"tau", "V"}, tau=0.05, tau_min=0.02, seed=4)
    before = {k: v.copy() for k, v in net.params.items()}
    net.fit(np.ones((30, 1)), np.full((30, 1), 0.3), dt=0.1, epochs=60, lr=0.2)
    for name in ("W", "theta", "gain", "U", "c"):
        np.testing.assert_array_equal(net.params[name], before[name])
    assert not np.array_equal(net.params["tau"], before["tau"])
    assert not np.array_equal(net.params["V"], before["V"])
    assert np.all(net.params["tau"] > 0.02)


def test_fit_uses_the_softplus_chain_rule_for_tau() -> None:
    # One SGD step on rho = softplus^-1(tau - tau_min): d loss/d rho = d loss/d tau * sigmoid(rho).
    net = CTRNN(5, 1, 1, trainable={"tau"}, tau=0.7, tau_min=0.1, seed=0)
    x, target = np.ones((10, 1)), np.full((10, 1), 0.5)
    _, grads = net.loss_and_grad(x, target, dt=0.2)
    rho = np.log(np.expm1(0.7 - 0.1))
    expected_rho = rho - 0.5 * grads["tau"] / (1 + np.exp(-rho))
    net.fit(x, target, dt=0.2, epochs=1, lr=0.5, optimizer="sgd")
    np.testing.assert_allclose(net.params["tau"], 0.1 + np.logaddexp(0, expected_rho), rtol=1e-12)


def test_save_and_load_round_trip_bit_exactly(tmp_path: Path) -> None:
    net = CTRNN(
        11,
        2,
        3,
        density=0.5,
        activation="tanh",
        integrator="rk4",
        dtype="float32",
        readout="linear",
        seed=5,
    )
    net.run(_inputs(8), dt=0.1)
    path = net.save(tmp_path / "model.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"], "no temporary files left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "permissions of a plain open()"
    same = CTRNN.load(path)
    for name, value in net.params.items():
        assert same.params[name].dtype == value.dtype
        np.testing.assert_array_equal(same.params[name], value)
    np.testing.assert_array_equal(same.state, net.state)
    assert (same.activation, same.integrator, same.readout, same.trainable) == (
        net.activation,
        net.integrator,
        net.readout,
        net.trainable,
    )
    x = _inputs(6)
    np.testing.assert_array_equal(same.run(x, dt=0.1), net.run(x, dt=0.1))


def test_the_backend_choice_is_saved_and_restored(tmp_path: Path) -> None:
    net = CTRNN(6, 2, 1, seed=2, backend="threaded", threads=3)
    path = net.save(tmp_path / "threaded.npz")
    same = CTRNN.load(path)
    assert same.backend.name == "threaded"
    assert same.backend.options()["threads"] == 3
    other = CTRNN.load(path, backend="dense", threads=1)
    assert other.backend.name == "dense"
    assert other.backend.options()["threads"] == 1
    x = _inputs(5)
    np.testing.assert_array_equal(other.run(x, dt=0.1), same.run(x, dt=0.1))
    # Files written before the backend was recorded load with "auto".
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["metadata"]))
    del meta["backend"]
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    assert CTRNN.load(tmp_path / "old.npz").backend.name == "dense"
    with pytest.raises(rnnlab.ConfigError, match="backend"):
        CTRNN.load(path, backend="gpu")


def test_load_refuses_foreign_and_future_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", W=np.zeros((2, 2)))
    with pytest.raises(rnnlab.ConfigError, match="metadata"):
        CTRNN.load(tmp_path / "other.npz")
    net = CTRNN(3, 1, 1)
    path = net.save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["metadata"]))
    meta["version"] = 99
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(rnnlab.ConfigError, match="version 99"):
        CTRNN.load(tmp_path / "future.npz")


def test_a_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    net = CTRNN(4, 1, 1, seed=0)
    path = net.save(tmp_path / "model.npz")
    before = path.read_bytes()
    net.params["W"] = np.array([[object()] * 4] * 4, dtype=object)
    with pytest.raises(TypeError):
        net.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_from_params_rebuilds_the_same_network() -> None:
    net = CTRNN(7, 2, 2, density=0.6, integrator="exp_euler", seed=9)
    copy = CTRNN.from_params(net.params, activation="logistic", integrator="exp_euler")
    assert copy.readout == "pick"
    x = _inputs(10)
    np.testing.assert_array_equal(copy.run(x, dt=0.1), net.run(x, dt=0.1))
    minimal = CTRNN.from_params(
        {"W": np.eye(3), "tau": np.ones(3), "U": np.ones((3, 1)), "V": np.full((1, 3), 0.5)}
    )
    assert minimal.readout == "linear"
    np.testing.assert_array_equal(minimal.params["gain"], np.ones(3))


def test_float32_runs_in_float32() -> None:
    net = CTRNN(6, 1, 1, dtype="float32", seed=0)
    y = net.run(np.ones((5, 1)), dt=0.1)
    assert y.dtype == np.float32
    _, grads = net.loss_and_grad(np.ones((5, 1)), np.zeros((5, 1)), dt=0.1)
    assert all(g.dtype == np.float32 for g in grads.values())


def test_a_rust_panic_surfaces_as_internal_error() -> None:
    from rnnlab import _native

    with pytest.raises(rnnlab.InternalError, match="deliberate panic"):
        _native.panic_for_test()


def test_optimizer_rejects_bad_settings_by_name() -> None:
    from rnnlab import _native

    with pytest.raises(rnnlab.ConfigError, match=r"optimizer.*sgd, adam"):
        _native.Optimizer("lbfgs", 3, 0.1)
    with pytest.raises(rnnlab.ConfigError, match="lr"):
        _native.Optimizer("adam", 3, -0.1)
    opt = _native.Optimizer("sgd", 2, 0.1)
    with pytest.raises(rnnlab.ShapeError, match="grads"):
        opt.step(np.zeros(2), np.zeros(3))
    with pytest.raises(rnnlab.ConfigError, match="optimizer"):
        CTRNN(3, 1, 1).fit(np.ones((4, 1)), np.ones((4, 1)), dt=0.1, optimizer="rmsprop")


def test_stored_and_reintegrated_backward_passes_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    net = CTRNN(9, 2, 2, integrator="rk4", readout="linear", seed=6)
    x, target = _inputs(25), np.random.default_rng(1).normal(size=(25, 2))
    stored = net.loss_and_grad(x, target, dt=0.1, substeps=3, truncation=7)
    monkeypatch.setenv("RNNLAB_BPTT_MEMORY_MB", "0")
    again = net.loss_and_grad(x, target, dt=0.1, substeps=3, truncation=7)
    assert stored[0] == again[0]
    for name, grad in stored[1].items():
        np.testing.assert_allclose(again[1][name], grad, rtol=1e-12, atol=1e-15)


def test_thread_count_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    net = CTRNN(40, 2, 2, readout="linear", seed=2)
    x = _inputs(200, batch=6)
    target = np.random.default_rng(2).normal(size=(6, 200, 2))
    monkeypatch.setenv("RNNLAB_NUM_THREADS", "1")
    y1 = net.run(x, dt=0.1, s0=np.zeros(40))
    l1, g1 = net.loss_and_grad(x, target, dt=0.1)
    monkeypatch.setenv("RNNLAB_NUM_THREADS", "3")
    y3 = net.run(x, dt=0.1, s0=np.zeros(40))
    l3, g3 = net.loss_and_grad(x, target, dt=0.1)
    np.testing.assert_array_equal(y1, y3)
    assert l1 == pytest.approx(l3, rel=1e-13)
    for name, grad in g1.items():
        np.testing.assert_allclose(g3[name], grad, rtol=1e-11, atol=1e-14)
