"""Loss injection: loss_and_grad(output_grad=G) returns the exact vector-Jacobian product."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, ShapeError
from rnnlab.ctrnn import CTRNN


@pytest.mark.parametrize("backend", ["dense", "sparse", "threaded"])
def test_injected_mse_gradient_reproduces_the_mse_gradients(backend):
    rng = np.random.default_rng(1)
    x, target = rng.uniform(size=(2, 14, 1)), rng.uniform(size=(2, 14, 2))
    net = CTRNN(9, 1, 2, seed=3, density=0.6, activation="tanh", backend=backend)
    kwargs = dict(dt=0.1, substeps=3, truncation=4)
    _, expected = net.loss_and_grad(x, target, **kwargs)
    y = net.run(x, dt=0.1, substeps=3, s0=np.zeros(9))
    g_out = 2.0 * (y - target) / target.size
    _, grads = net.loss_and_grad(x, None, output_grad=g_out, **kwargs)
    for name in ("W", "tau", "theta", "gain", "U", "s0"):
        scale = np.max(np.abs(expected[name]))
        assert np.max(np.abs(grads[name] - expected[name])) <= 1e-10 * scale, name


def test_injected_linear_loss_against_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(20, 1))
    weights = rng.normal(size=(20, 1))  # L = Σ weights ⊙ y: ∂L/∂y = weights
    net = CTRNN(6, 1, 1, seed=4, activation="tanh", tau=0.5)

    def objective(params):
        probe = CTRNN.from_params(params, activation="tanh", backend="dense")
        return float(np.sum(weights * probe.run(x, dt=0.1, substeps=2, s0=np.zeros(6))))

    surrogate, grads = net.loss_and_grad(x, None, dt=0.1, substeps=2, output_grad=weights)
    assert surrogate == pytest.approx(objective(net.params), rel=1e-12)
    h = 1e-6
    for name, index in (("W", (1, 2)), ("W", (5, 0)), ("tau", (3,)), ("U", (2, 0))):
        plus = {k: v.copy() for k, v in net.params.items()}
        minus = {k: v.copy() for k, v in net.params.items()}
        plus[name][index] += h
        minus[name][index] -= h
        numeric = (objective(plus) - objective(minus)) / (2 * h)
        assert grads[name][index] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_injection_arguments_are_checked():
    net = CTRNN(4, 1, 1)
    x = np.zeros((5, 1))
    with pytest.raises(ConfigError, match="exactly one of target and output_grad"):
        net.loss_and_grad(x, None, dt=0.1)
    with pytest.raises(ConfigError, match="exactly one"):
        net.loss_and_grad(x, np.zeros((5, 1)), dt=0.1, output_grad=np.zeros((5, 1)))
    with pytest.raises(ShapeError, match="output_grad: expected shape"):
        net.loss_and_grad(x, None, dt=0.1, output_grad=np.zeros((4, 1)))
    with pytest.raises(ConfigError, match="recorded_states"):
        net.loss_and_grad(
            x,
            None,
            dt=0.1,
            truncation=2,
            output_grad=np.zeros((5, 1)),
            recorded_states=np.zeros((5, 4)),
        )


def test_online_trainer_with_an_injected_mse_gradient_matches_the_default():
    from rnnlab.ctrnn import OnlineTrainer

    t = np.arange(120) * 0.1
    values = np.stack([np.sin(t), np.cos(0.7 * t)], axis=1)
    results = []
    for loss_fn in (None, lambda p, target: 2.0 * (p - target) / p.size):
        net = CTRNN(8, 2, 2, seed=1, tau=0.3, readout="linear", backend="threaded", threads=2)
        trainer = OnlineTrainer(
            net, substeps=2, window=20, truncation=5, update_every=4, lr=1e-2, loss_fn=loss_fn
        )
        trainer.process(t, values)
        results.append(trainer.history())
    np.testing.assert_allclose(
        results[1]["prediction"], results[0]["prediction"], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(results[1]["update_loss"], results[0]["update_loss"], rtol=1e-9)
    with pytest.raises(ConfigError, match="loss_fn"):
        OnlineTrainer(CTRNN(2, 1, 1), loss_fn=3)
