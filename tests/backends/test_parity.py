"""Every backend returns dense's loss and gradients to 1e-10 relative (float64).

dense is itself checked against the numpy and torch references in tests/ctrnn; here sparse (on
the same mask), threaded (chunks split over threads) and distributed (chunks sent to worker
processes) are compared with it, over integrators, activations, truncations that do and do
not divide the window, irregular frame times and batches.
"""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.backends import make_backend
from rnnlab.ctrnn.backends.distributed import DistributedBackend

GRADS = ("W", "tau", "theta", "gain", "U", "V", "c", "s0")


def assert_same(a: tuple[float, dict], b: tuple[float, dict], rtol: float = 1e-10) -> None:
    (la, ga), (lb, gb) = a, b
    assert la == pytest.approx(lb, rel=rtol, abs=0)
    for name in GRADS:
        scale = max(np.max(np.abs(gb[name])), 1e-300)
        err = np.max(np.abs(ga[name] - gb[name])) / scale
        assert err <= rtol, f"{name}: relative difference {err:.3g}"


def problem(seed: int, batch: int, frames: int, irregular: bool):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(batch, frames, 2))
    y = rng.uniform(0, 1, size=(batch, frames, 2))
    if irregular:
        times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.2, size=frames))])
        return x, y, {"times": times}
    return x, y, {"dt": 0.1}


CASES = [
    # integrator, activation, batch, frames, truncation, irregular
    ("euler", "logistic", 1, 23, 5, False),
    ("exp_euler", "tanh", 3, 20, 4, False),
    ("rk4", "tanh", 2, 17, 6, True),
    ("euler", "relu", 2, 12, None, False),
    ("exp_euler", "identity", 1, 9, 20, False),
]


@pytest.mark.parametrize(
    ("integrator", "activation", "batch", "frames", "truncation", "irregular"), CASES
)
def test_local_backends_match_dense(integrator, activation, batch, frames, truncation, irregular):
    x, y, times = problem(7, batch, frames, irregular)
    kwargs = dict(density=0.35, seed=3, integrator=integrator, activation=activation, tau=0.5)
    dense = CTRNN(14, 2, 2, backend="dense", **kwargs)
    expected = dense.loss_and_grad(x, y, substeps=3, truncation=truncation, **times)
    for backend, options in (
        ("sparse", {}),
        ("threaded", {"threads": 2}),
        ("threaded", {"threads": 3, "sparse": True}),
    ):
        net = CTRNN(14, 2, 2, backend=backend, **options, **kwargs)
        got = net.loss_and_grad(x, y, substeps=3, truncation=truncation, **times)
        assert_same(got, expected)
        # and the forward pass
        np.testing.assert_allclose(
            net.run(x, substeps=3, s0=np.zeros(14), **times),
            dense.run(x, substeps=3, s0=np.zeros(14), **times),
            rtol=1e-12,
            atol=1e-14,
        )


@pytest.mark.parametrize(
    ("integrator", "activation", "batch", "frames", "truncation", "irregular"), CASES[:3]
)
def test_distributed_matches_dense(
    distributed: DistributedBackend, integrator, activation, batch, frames, truncation, irregular
):
    x, y, times = problem(11, batch, frames, irregular)
    kwargs = dict(density=0.5, seed=5, integrator=integrator, activation=activation, tau=0.7)
    expected = CTRNN(10, 2, 2, backend="dense", **kwargs).loss_and_grad(
        x, y, substeps=2, truncation=truncation, **times
    )
    net = CTRNN(10, 2, 2, backend=distributed, **kwargs)
    assert_same(net.loss_and_grad(x, y, substeps=2, truncation=truncation, **times), expected)


def test_sparse_matches_dense_at_low_density_and_float32():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(30, 1)), rng.uniform(size=(30, 1))
    dense = CTRNN(80, 1, 1, density=0.05, seed=1, backend="dense")
    sparse = CTRNN(80, 1, 1, density=0.05, seed=1, backend="sparse")
    assert_same(
        sparse.loss_and_grad(x, y, dt=0.1, substeps=4, truncation=7),
        dense.loss_and_grad(x, y, dt=0.1, substeps=4, truncation=7),
    )
    # masked-out weights get exactly zero gradient on the sparse kernels too
    _, g = sparse.loss_and_grad(x, y, dt=0.1, substeps=4)
    assert np.all(g["W"][sparse.params["mask"] == 0] == 0)
    d32 = CTRNN(80, 1, 1, density=0.05, seed=1, dtype="float32", backend="dense")
    s32 = CTRNN(80, 1, 1, density=0.05, seed=1, dtype="float32", backend="sparse")
    l_d, g_d = d32.loss_and_grad(x, y, dt=0.1, substeps=4)
    l_s, g_s = s32.loss_and_grad(x, y, dt=0.1, substeps=4)
    assert l_s == pytest.approx(l_d, rel=1e-5)
    np.testing.assert_allclose(g_s["W"], g_d["W"], rtol=1e-3, atol=1e-6)


def test_auto_picks_sparse_below_the_threshold():
    assert CTRNN(128, 1, 1, density=0.05, seed=0).backend.name == "sparse"
    assert CTRNN(128, 1, 1, density=0.9, seed=0).backend.name == "dense"
    assert CTRNN(16, 1, 1, density=0.05, seed=0).backend.name == "dense"


def test_unknown_backend_and_options_are_config_errors():
    from rnnlab import ConfigError

    with pytest.raises(ConfigError, match="backend: unknown value 'gpu'"):
        CTRNN(4, 1, 1, backend="gpu")
    with pytest.raises(ConfigError, match="not understood by backend 'dense'"):
        CTRNN(4, 1, 1, backend="dense", workers=3)
    with pytest.raises(ConfigError, match="threads"):
        make_backend("threaded", threads=0)
    with pytest.raises(ConfigError, match="loopback"):
        make_backend("distributed", workers=0, endpoint="tcp://0.0.0.0:*")


def test_threaded_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("RNNLAB_NUM_THREADS", "3")
    assert make_backend("threaded").threads == 3
    assert make_backend("threaded", threads=5).threads == 5


def test_fit_and_online_trainer_agree_across_backends(distributed: DistributedBackend):
    from rnnlab.ctrnn import OnlineTrainer

    rng = np.random.default_rng(2)
    x, y = rng.uniform(size=(2, 24, 1)), rng.uniform(size=(2, 24, 1))
    histories = {}
    for backend in ("dense", "sparse", "threaded", distributed):
        net = CTRNN(9, 1, 1, density=0.6, seed=4, backend=backend)
        h = net.fit(x, y, dt=0.1, substeps=2, epochs=4, lr=1e-2, truncation=5)
        histories[getattr(backend, "name", backend)] = (h["loss"], net.params["W"])
    for name, (loss, w) in histories.items():
        np.testing.assert_allclose(loss, histories["dense"][0], rtol=1e-10, err_msg=name)
        np.testing.assert_allclose(w, histories["dense"][1], rtol=1e-9, atol=1e-13)

    t = np.arange(80) * 0.1
    values = np.stack([np.sin(t), np.cos(0.5 * t)], axis=1)
    results = []
    for backend in ("dense", "threaded"):
        net = CTRNN(8, 2, 2, seed=1, tau=0.3, readout="linear", backend=backend)
        trainer = OnlineTrainer(net, substeps=2, window=20, truncation=5, update_every=4, lr=1e-2)
        trainer.process(t, values)
        results.append(trainer.history()["prediction"])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-9, atol=1e-12)


def test_recorded_states_start_the_chunks_on_every_backend(distributed: DistributedBackend):
    from rnnlab import ConfigError

    rng = np.random.default_rng(9)
    x, y = rng.uniform(size=(2, 21, 1)), rng.uniform(size=(2, 21, 1))
    kwargs = dict(dt=0.1, substeps=3, truncation=4)
    dense = CTRNN(11, 1, 1, seed=8, density=0.5, backend="dense")
    _, fresh = dense.run(x, dt=0.1, substeps=3, s0=np.zeros(11), return_states=True)
    # recorded states equal to a fresh forward pass: the ordinary truncated gradient
    assert_same(
        dense.loss_and_grad(x, y, recorded_states=fresh, **kwargs),
        dense.loss_and_grad(x, y, **kwargs),
    )
    # states recorded under other parameters: every backend agrees, and they matter
    recorded = fresh + rng.normal(scale=0.1, size=fresh.shape)
    expected = dense.loss_and_grad(x, y, recorded_states=recorded, **kwargs)
    assert abs(expected[0] - dense.loss_and_grad(x, y, **kwargs)[0]) > 1e-6
    for backend in ("sparse", "threaded", distributed):
        net = CTRNN(11, 1, 1, seed=8, density=0.5, backend=backend)
        assert_same(net.loss_and_grad(x, y, recorded_states=recorded, **kwargs), expected)
    with pytest.raises(ConfigError, match="recorded_states"):
        dense.loss_and_grad(x, y, dt=0.1, recorded_states=recorded)


def test_threaded_backend_works_in_a_forked_child():
    import os

    rng = np.random.default_rng(4)
    x, y = rng.uniform(size=(18, 1)), rng.uniform(size=(18, 1))
    net = CTRNN(10, 1, 1, seed=2, backend="threaded", threads=2)
    expected = net.loss_and_grad(x, y, dt=0.1, substeps=2, truncation=4)  # pool now running
    pid = os.fork()
    if pid == 0:  # the child: the pool's threads did not survive the fork; it must make new ones
        code = 1
        try:
            loss, grads = net.loss_and_grad(x, y, dt=0.1, substeps=2, truncation=4)
            same = loss == expected[0] and np.array_equal(grads["W"], expected[1]["W"])
            code = 0 if same else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
