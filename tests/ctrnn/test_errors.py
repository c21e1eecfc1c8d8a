"""Bad inputs raise the documented ``rnnlab`` errors, naming the offending argument.

``rnnlab.ShapeError`` and ``rnnlab.ConfigError`` both subclass ``rnnlab.RnnlabError`` and
``ValueError``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import rnnlab
from rnnlab.ctrnn import CTRNN

N, N_IN, N_OUT = 6, 2, 3


def make_net(**kw) -> CTRNN:
    args = dict(n_neurons=N, n_inputs=N_IN, n_outputs=N_OUT, seed=0, readout="linear")
    args.update(kw)
    return CTRNN(**args)


def good_params() -> dict[str, np.ndarray]:
    return {k: np.array(v, dtype=np.float64) for k, v in make_net().params.items()}


def data(b: int = 2, t: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(b, t, N_IN)), rng.normal(size=(b, t, N_OUT))


def names(word: str) -> str:
    """Regex matching ``word`` as a whole word (so that ``x`` does not match ``max``)."""
    return rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])"


def check(excinfo: pytest.ExceptionInfo, cls: type, *words: str) -> None:
    """The error has class ``cls``, is a ValueError, and its message names every word."""
    err = excinfo.value
    assert isinstance(err, cls), f"{type(err).__name__} is not {cls.__name__}: {err}"
    assert isinstance(err, rnnlab.RnnlabError)
    assert isinstance(err, ValueError)
    for word in words:
        assert re.search(names(word), str(err)), f"message does not name {word!r}: {err}"


def test_error_hierarchy() -> None:
    for cls in (rnnlab.ShapeError, rnnlab.ConfigError):
        assert issubclass(cls, rnnlab.RnnlabError)
        assert issubclass(cls, ValueError)


# --------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize(
    "shape",
    [(2, 5, 3), (5, 3), (5, 1), (2, 5, 1), (10,), (1, 2, 5, 2)],
    ids=["n_in_mismatch", "unbatched_n_in_mismatch", "too_few", "batched_too_few", "1d", "4d"],
)
def test_bad_x_shape_in_run(shape: tuple[int, ...]) -> None:
    net = make_net()
    with pytest.raises(rnnlab.ShapeError) as excinfo:
        net.run(np.zeros(shape), dt=0.1, substeps=2)
    check(excinfo, rnnlab.ShapeError, "x")


def test_bad_x_shape_in_loss_and_grad() -> None:
    net = make_net()
    x, target = data()
    with pytest.raises(rnnlab.ShapeError) as excinfo:
        net.loss_and_grad(x[..., :1], target, dt=0.1, substeps=2)
    check(excinfo, rnnlab.ShapeError, "x")


@pytest.mark.parametrize("shape", [(2, 5, 2), (2, 4, 3), (3, 5, 3), (5, 3)])
def test_target_shape_mismatch(shape: tuple[int, ...]) -> None:
    net = make_net()
    x, _ = data()
    with pytest.raises(rnnlab.ShapeError) as excinfo:
        net.loss_and_grad(x, np.zeros(shape), dt=0.1, substeps=2)
    check(excinfo, rnnlab.ShapeError, "target")


@pytest.mark.parametrize("shape", [(2, N + 1), (3, N), (N, 2)])
def test_s0_shape_mismatch(shape: tuple[int, ...]) -> None:
    net = make_net()
    x, target = data()
    with pytest.raises(rnnlab.ShapeError) as excinfo:
        net.run(x, dt=0.1, substeps=2, s0=np.zeros(shape))
    check(excinfo, rnnlab.ShapeError, "s0")
    with pytest.raises(rnnlab.ShapeError) as excinfo:
        net.loss_and_grad(x, target, dt=0.1, substeps=2, s0=np.zeros(shape))
    check(excinfo, rnnlab.ShapeError, "s0")


def test_dt_array_of_wrong_length() -> None:
    net = make_net()
    x, _ = data(t=5)
    with pytest.raises(rnnlab.RnnlabError) as excinfo:
        net.run(x, dt=np.full(4, 0.1), substeps=2)
    check(excinfo, rnnlab.RnnlabError, "dt")
    with pytest.raises(rnnlab.RnnlabError) as excinfo:
        net.run(x, times=np.linspace(0.0, 1.0, 5), substeps=2)  # needs T + 1 = 6 boundaries
    check(excinfo, rnnlab.RnnlabError, "times")


@pytest.mark.parametrize(
    ("key", "axis", "named"),
    [
        ("W", 1, ("W",)),  # not square
        ("tau", 0, ("tau",)),
        ("theta", 0, ("theta",)),
        ("gain", 0, ("gain",)),
        ("U", 0, ("U",)),
        ("V", 1, ("V",)),
        ("c", 0, ("c", "V")),  # n_out disagrees between V and c: either may be blamed
    ],
)
def test_from_params_shape_mismatch(key: str, axis: int, named: tuple[str, ...]) -> None:
    params = good_params()
    extra = np.take(params[key], [0], axis=axis)
    params[key] = np.concatenate([params[key], extra], axis=axis)
    with pytest.raises(rnnlab.ShapeError) as excinfo:
        CTRNN.from_params(params, readout="linear")
    check(excinfo, rnnlab.ShapeError)
    msg = str(excinfo.value)
    assert any(re.search(names(word), msg) for word in named), f"{named} not named in: {msg}"


# --------------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("where", ["run", "loss_and_grad"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_x(where: str, bad: float) -> None:
    net = make_net()
    x, target = data()
    x[1, 2, 0] = bad
    if where == "run":
        with pytest.raises(rnnlab.RnnlabError) as excinfo:
            net.run(x, dt=0.1, substeps=2)
    else:
        with pytest.raises(rnnlab.RnnlabError) as excinfo:
            net.loss_and_grad(x, target, dt=0.1, substeps=2)
    check(excinfo, rnnlab.RnnlabError, "x")


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_nonpositive_tau_in_constructor(tau: float) -> None:
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(tau=tau)
    check(excinfo, rnnlab.ConfigError, "tau")


def test_tau_not_above_tau_min() -> None:
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(tau=0.005, tau_min=0.01)
    assert "tau" in str(excinfo.value)
    check(excinfo, rnnlab.ConfigError)


@pytest.mark.parametrize("bad", [0.0, -0.3])
def test_nonpositive_tau_in_from_params(bad: float) -> None:
    params = good_params()
    params["tau"][2] = bad
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        CTRNN.from_params(params, readout="linear")
    check(excinfo, rnnlab.ConfigError, "tau")


@pytest.mark.parametrize("density", [0.0, -0.5, 1.5])
def test_density_out_of_range(density: float) -> None:
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(density=density)
    check(excinfo, rnnlab.ConfigError, "density")


def test_unknown_integrator() -> None:
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(integrator="heun")
    check(excinfo, rnnlab.ConfigError, "euler", "exp_euler", "rk4")
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        CTRNN.from_params(good_params(), integrator="RK4", readout="linear")
    check(excinfo, rnnlab.ConfigError, "euler", "exp_euler", "rk4")


def test_unknown_activation() -> None:
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(activation="sigmoid")
    check(excinfo, rnnlab.ConfigError, "logistic", "tanh", "relu", "identity")
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        CTRNN.from_params(good_params(), activation="softplus", readout="linear")
    check(excinfo, rnnlab.ConfigError, "logistic", "tanh", "relu", "identity")


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), np.array([0.1, 0.1, 0.0, 0.1, 0.1])])
def test_nonpositive_dt(dt: object) -> None:
    net = make_net()
    x, target = data()
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        net.run(x, dt=dt, substeps=2)
    check(excinfo, rnnlab.ConfigError, "dt")
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        net.loss_and_grad(x, target, dt=dt, substeps=2)
    check(excinfo, rnnlab.ConfigError, "dt")


@pytest.mark.parametrize("times", [[0.0, 0.1, 0.2, 0.2, 0.3, 0.4], [0.0, 0.1, 0.3, 0.2, 0.4, 0.5]])
def test_non_increasing_times(times: list[float]) -> None:
    net = make_net()
    x, _ = data()
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        net.run(x, times=np.asarray(times), substeps=2)
    check(excinfo, rnnlab.ConfigError, "times")


def test_substeps_must_be_positive() -> None:
    net = make_net()
    x, _ = data()
    with pytest.raises(rnnlab.RnnlabError) as excinfo:
        net.run(x, dt=0.1, substeps=0)
    check(excinfo, rnnlab.RnnlabError, "substeps")


def test_truncation_must_be_positive() -> None:
    net = make_net()
    x, target = data()
    with pytest.raises(rnnlab.RnnlabError) as excinfo:
        net.loss_and_grad(x, target, dt=0.1, substeps=2, truncation=0)
    check(excinfo, rnnlab.RnnlabError, "truncation")


def test_unknown_readout_and_trainable() -> None:
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(readout="softmax")
    check(excinfo, rnnlab.ConfigError, "readout")
    with pytest.raises(rnnlab.ConfigError) as excinfo:
        make_net(trainable={"W", "weights"})
    check(excinfo, rnnlab.ConfigError, "trainable")
