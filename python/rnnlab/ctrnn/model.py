"""The :class:`CTRNN` class: parameters, validation, and calls into the Rust kernels."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rnnlab import _native
from rnnlab.atomic import write_npz_atomic
from rnnlab.ctrnn.backends import Backend, DenseBackend, Problem, make_backend
from rnnlab.errors import ConfigError, ShapeError

__all__ = [
    "ACTIVATIONS",
    "CTRNN",
    "DTYPES",
    "INTEGRATORS",
    "OPTIMIZERS",
    "PARAM_NAMES",
    "READOUTS",
    "TRAINABLE_NAMES",
]

ACTIVATIONS = ("logistic", "tanh", "relu", "identity")
INTEGRATORS = ("euler", "exp_euler", "rk4")
DTYPES = ("float32", "float64")
Readout = Literal["pick", "linear"]
READOUTS: tuple[Readout, ...] = ("pick", "linear")
OPTIMIZERS = ("adam", "sgd")
PARAM_NAMES = ("W", "mask", "tau", "theta", "gain", "U", "V", "c")
TRAINABLE_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")
FILE_FORMAT = "rnnlab.ctrnn"
FILE_VERSION = 1

Array = NDArray[np.floating[Any]]
ChoiceT = TypeVar("ChoiceT", bound=str)


def _choice(field: str, value: str, allowed: tuple[ChoiceT, ...]) -> ChoiceT:
    """``value`` if it is one of ``allowed`` (typed as the allowed values), else ConfigError."""
    for option in allowed:
        if value == option:
            return option
    raise ConfigError(f"{field}: unknown value {value!r}; allowed: {', '.join(allowed)}")


def _softplus(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.logaddexp(0.0, x)


def _inverse_softplus(y: NDArray[np.float64]) -> NDArray[np.float64]:
    # log(e^y − 1) = y + log(1 − e^{−y}), stable for large y.
    return y + np.log(-np.expm1(-y))


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _per_neuron(field: str, value: ArrayLike, n: int, dtype: np.dtype[Any]) -> Array:
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 0:
        return np.full(n, array, dtype=dtype)
    if array.shape != (n,):
        raise ShapeError(f"{field}: expected a scalar or shape ({n},), got shape {array.shape}")
    return array.copy()


class CTRNN:
    """A continuous-time recurrent neural network, τ ⊙ ds/dt = −s + W·φ(g ⊙ (s + θ)) + U·x(t).

    Outputs are y = V·s + c, read at the end of every input frame. The equations, integrators,
    loss and the τ parameterisation are stated in ``docs/ctrnn.md``.

    Example::

        net = CTRNN(n_neurons=64, n_inputs=2, n_outputs=1, seed=0)
        y = net.run(x, dt=0.1, substeps=10)                    # x: [T, 2] -> y: [T, 1]
        loss, grads = net.loss_and_grad(x, target, dt=0.1, substeps=10)
        history = net.fit(x, target, dt=0.1, substeps=10, epochs=200, lr=1e-2)
        net.save("model.npz"); same = CTRNN.load("model.npz")

    Args:
        n_neurons: number of neurons N.
        n_inputs: input width n_in (may be 0).
        n_outputs: output width n_out.
        density: fraction of the N² possible synapses present, in (0, 1].
        activation: φ, one of ``logistic``, ``tanh``, ``relu``, ``identity``.
        integrator: ``euler``, ``exp_euler`` or ``rk4``.
        dtype: ``float32`` or ``float64``.
        seed: seed of the initialisation.
        readout: ``pick`` (V selects the last n_outputs neurons, not trained) or ``linear``.
        trainable: parameter names that :meth:`fit` trains; default W, tau, theta, gain, U
            (plus V, c for a linear readout).
        tau, theta, gain: initial time constants, biases and gains (scalar or per neuron).
        tau_min: lower bound of τ in the trained parameterisation τ = τ_min + softplus(ρ).
        backend: how the kernels run (``docs/backends.md``): ``dense``, ``sparse``,
            ``threaded``, ``distributed``, ``async``, or ``auto`` (``sparse`` when the mask's
            density is at most :data:`~rnnlab.ctrnn.backends.SPARSE_DENSITY_THRESHOLD` and
            N >= :data:`~rnnlab.ctrnn.backends.SPARSE_MIN_NEURONS`, else ``dense``).
        backend_options: passed to the backend, e.g. ``threads=2`` (threaded),
            ``workers=4, timeout=30`` (distributed), ``max_staleness=1`` (async).
    """

    def __init__(
        self,
        n_neurons: int,
        n_inputs: int,
        n_outputs: int,
        *,
        density: float = 1.0,
        activation: str = "logistic",
        integrator: str = "euler",
        dtype: str = "float64",
        seed: int = 0,
        readout: Readout = "pick",
        trainable: Iterable[str] | None = None,
        tau: ArrayLike = 1.0,
        theta: ArrayLike = 0.0,
        gain: ArrayLike = 1.0,
        tau_min: float = 0.01,
        backend: str | Backend = "auto",
        **backend_options: Any,
    ) -> None:
        for field, value, low in (
            ("n_neurons", n_neurons, 1),
            ("n_inputs", n_inputs, 0),
            ("n_outputs", n_outputs, 1),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{field}: must be an integer >= {low}, got {value!r}")
        if not (isinstance(density, (int, float)) and 0.0 < float(density) <= 1.0):
            raise ConfigError(f"density: must be in (0, 1], got {density!r}")
        _choice("readout", readout, READOUTS)
        if readout == "pick" and n_outputs > n_neurons:
            raise ConfigError(
                f"n_outputs: a 'pick' readout reads n_outputs neurons, so n_outputs <= n_neurons "
                f"({n_neurons}); got {n_outputs}"
            )
        dtype_ = np.dtype(
            _choice("dtype", str(np.dtype(dtype)) if dtype in DTYPES else dtype, DTYPES)
        )
        n, rng = int(n_neurons), np.random.default_rng(seed)

        synapses = max(1, round(float(density) * n * n))
        mask = np.zeros(n * n, dtype=dtype_)
        mask[rng.choice(n * n, size=synapses, replace=False)] = 1.0
        mask = mask.reshape(n, n)
        fan = synapses / n
        bound = math.sqrt(6.0 / (fan + fan))
        W = rng.uniform(-bound, bound, size=(n, n)).astype(dtype_) * mask
        bound_u = math.sqrt(6.0 / (n_inputs + n)) if n_inputs else 0.0
        U = rng.uniform(-bound_u, bound_u, size=(n, n_inputs)).astype(dtype_)
        if readout == "pick":
            V = np.zeros((n_outputs, n), dtype=dtype_)
            V[np.arange(n_outputs), np.arange(n - n_outputs, n)] = 1.0
        else:
            bound_v = math.sqrt(6.0 / (n + n_outputs))
            V = rng.uniform(-bound_v, bound_v, size=(n_outputs, n)).astype(dtype_)
        params = {
            "W": W,
            "mask": mask,
            "tau": _per_neuron("tau", tau, n, dtype_),
            "theta": _per_neuron("theta", theta, n, dtype_),
            "gain": _per_neuron("gain", gain, n, dtype_),
            "U": U,
            "V": V,
            "c": np.zeros(n_outputs, dtype=dtype_),
        }
        self._configure(params, activation, integrator, readout, trainable, tau_min)
        self.seed: int | None = seed
        self.density = float(density)
        self.set_backend(backend, **backend_options)

    # ----------------------------------------------------------------- construction
    def _configure(
        self,
        params: Mapping[str, ArrayLike],
        activation: str,
        integrator: str,
        readout: str,
        trainable: Iterable[str] | None,
        tau_min: float,
    ) -> None:
        self.activation = _choice("activation", activation, ACTIVATIONS)
        self.integrator = _choice("integrator", integrator, INTEGRATORS)
        self.readout = _choice("readout", readout, READOUTS)
        if not (math.isfinite(tau_min) and tau_min >= 0.0):
            raise ConfigError(f"tau_min: must be finite and >= 0, got {tau_min!r}")
        self.tau_min = float(tau_min)
        if trainable is None:
            names = {"W", "tau", "theta", "gain", "U"}
            if readout == "linear":
                names |= {"V", "c"}
        else:
            if isinstance(trainable, str):
                raise ConfigError("trainable: must be a collection of names, e.g. {'W', 'tau'}")
            names = set(trainable)
            unknown = names - set(TRAINABLE_NAMES)
            if unknown:
                raise ConfigError(
                    f"trainable: unknown names {sorted(unknown)}; "
                    f"allowed: {', '.join(TRAINABLE_NAMES)}"
                )
        self.trainable = frozenset(names)
        self.params = self._checked_params(params)
        self._state: Array | None = None
        self._backend: Backend = DenseBackend()
        self._owns_backend = False
        #: bumped whenever the mask changes after construction (StructuralPlasticity)
        self.structure_version = 0

    def _checked_params(self, params: Mapping[str, ArrayLike]) -> dict[str, Array]:
        missing = {"W", "tau", "U", "V"} - set(params)
        if missing:
            raise ConfigError(
                f"params: missing {sorted(missing)}; keys are {', '.join(PARAM_NAMES)}"
            )
        unknown = set(params) - set(PARAM_NAMES)
        if unknown:
            raise ConfigError(
                f"params: unknown keys {sorted(unknown)}; allowed: {', '.join(PARAM_NAMES)}"
            )
        W = np.asarray(params["W"])
        dtype = W.dtype if W.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ShapeError(f"W: expected a square [N, N] matrix, got shape {W.shape}")
        n = W.shape[0]
        U = np.asarray(params["U"], dtype=dtype)
        V = np.asarray(params["V"], dtype=dtype)
        if U.ndim != 2 or U.shape[0] != n:
            raise ShapeError(f"U: expected shape ({n}, n_inputs), got {U.shape}")
        if V.ndim != 2 or V.shape[1] != n:
            raise ShapeError(f"V: expected shape (n_outputs, {n}), got {V.shape}")
        n_out = V.shape[0]
        mask = np.asarray(params.get("mask", np.ones((n, n))), dtype=dtype)
        if mask.shape != (n, n):
            raise ShapeError(f"mask: expected shape ({n}, {n}), got {mask.shape}")
        if not np.all((mask == 0) | (mask == 1)):
            raise ConfigError("mask: entries must be 0 or 1")
        checked = {
            "W": np.ascontiguousarray(W, dtype=dtype) * mask,
            "mask": np.ascontiguousarray(mask),
            "tau": _per_neuron("tau", params["tau"], n, dtype),
            "theta": _per_neuron("theta", params.get("theta", 0.0), n, dtype),
            "gain": _per_neuron("gain", params.get("gain", 1.0), n, dtype),
            "U": np.ascontiguousarray(U),
            "V": np.ascontiguousarray(V),
            "c": _per_neuron("c", params.get("c", 0.0), n_out, dtype),
        }
        for name, array in checked.items():
            if not np.all(np.isfinite(array)):
                raise ConfigError(f"{name}: must be finite (found NaN or inf)")
        tau = checked["tau"]
        if np.any(tau <= 0):
            raise ConfigError(f"tau: every time constant must be > 0, got min {tau.min()!r}")
        if "tau" in self.trainable and np.any(tau <= self.tau_min):
            raise ConfigError(
                f"tau: a trained tau must stay above tau_min = {self.tau_min} "
                f"(tau = tau_min + softplus(rho)); got min {tau.min()!r}"
            )
        return checked

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, ArrayLike],
        *,
        activation: str = "logistic",
        integrator: str = "euler",
        readout: Readout | None = None,
        trainable: Iterable[str] | None = None,
        tau_min: float = 0.01,
        backend: str | Backend = "auto",
        **backend_options: Any,
    ) -> CTRNN:
        """Build a network from a dict of arrays with the keys of :attr:`params`.

        ``W``, ``tau``, ``U`` and ``V`` are required; ``theta`` (0), ``gain`` (1), ``c`` (0) and
        ``mask`` (all ones) default. The dtype is W's. ``readout=None`` picks ``"pick"`` when V
        is a 0/1 matrix with one 1 per row, else ``"linear"``.
        """
        if readout is None:
            V = np.asarray(params["V"]) if "V" in params else np.zeros((0, 0))
            is_pick = V.ndim == 2 and np.all((V == 0) | (V == 1)) and np.all(V.sum(axis=1) == 1)
            readout = "pick" if is_pick else "linear"
        net = cls.__new__(cls)
        net.seed = None
        net._configure(params, activation, integrator, readout, trainable, tau_min)
        net.density = float(net.params["mask"].mean())
        net.set_backend(backend, **backend_options)
        return net

    # ----------------------------------------------------------------- backends
    def set_backend(self, backend: str | Backend = "auto", **options: Any) -> None:
        """Switch how the kernels run (closing the previous backend's workers, if it made them).

        ``backend`` is a name (``auto`` picks ``sparse`` or ``dense`` from the mask density, see
        the class docs) or a backend object, which may be shared by several networks (it is then
        not closed by :meth:`close`).
        """
        previous = getattr(self, "_backend", None)
        owned = getattr(self, "_owns_backend", False)
        if isinstance(backend, Backend):
            if options:
                raise ConfigError("backend options: give them to the backend object instead")
            self._backend, self._owns_backend = backend, False
        else:
            self._backend = make_backend(
                backend,
                density=float(self.params["mask"].mean()),
                n_neurons=self.n_neurons,
                **options,
            )
            self._owns_backend = True
        if previous is not None and owned and previous is not self._backend:
            previous.close()

    @property
    def backend(self) -> Backend:
        """The backend object (``backend.name`` is ``dense``, ``sparse``, ...)."""
        return self._backend

    def close(self) -> None:
        """Release the backend's worker processes, if this network made them (idempotent)."""
        if self._owns_backend:
            self._backend.close()

    def __enter__(self) -> CTRNN:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- properties
    @property
    def n_neurons(self) -> int:
        return int(self.params["W"].shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.params["U"].shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.params["V"].shape[0])

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.params["W"].dtype

    @property
    def state(self) -> Array | None:
        """The state after the last :meth:`run` ([N] or [B, N]); None after :meth:`reset`."""
        return None if self._state is None else self._state.copy()

    @state.setter
    def state(self, value: ArrayLike | None) -> None:
        if value is None:
            self._state = None
            return
        array = np.array(value, dtype=self.dtype)
        if array.shape[-1:] != (self.n_neurons,) or array.ndim not in (1, 2):
            raise ShapeError(
                f"state: expected shape ({self.n_neurons},) or (B, {self.n_neurons}), "
                f"got {array.shape}"
            )
        self._state = array

    def reset(self) -> None:
        """Forget the running state; the next :meth:`run` starts from zeros."""
        self._state = None

    def __repr__(self) -> str:
        return (
            f"CTRNN(n_neurons={self.n_neurons}, n_inputs={self.n_inputs}, "
            f"n_outputs={self.n_outputs}, "
            f"density={self.density:.3g}, activation={self.activation!r}, "
            f"integrator={self.integrator!r}, "
            f"dtype={str(self.dtype)!r}, readout={self.readout!r}, "
            f"backend={self._backend.name!r})"
        )

    # ----------------------------------------------------------------- argument checks
    def _inputs(self, x: ArrayLike) -> tuple[Array, bool]:
        array = np.asarray(x)
        if array.dtype.kind not in "fiub":
            raise ShapeError(f"x: expected a numeric array, got dtype {array.dtype}")
        unbatched = array.ndim == 2
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[2] != self.n_inputs:
            raise ShapeError(
                f"x: expected shape (T, {self.n_inputs}) or (B, T, {self.n_inputs}), "
                f"got {np.shape(x)}"
            )
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if not np.all(np.isfinite(array)):
            raise ShapeError("x: contains NaN or inf; inputs must be finite")
        return array, unbatched

    def _durations(self, frames: int, dt: ArrayLike | None, times: ArrayLike | None) -> Array:
        if (dt is None) == (times is None):
            raise ConfigError(
                "dt/times: give exactly one of dt (frame duration) or times (T+1 frame boundaries)"
            )
        if times is not None:
            t = np.asarray(times, dtype=np.float64)
            if t.shape != (frames + 1,):
                raise ShapeError(
                    f"times: expected T+1 = {frames + 1} frame boundaries, got shape {t.shape}"
                )
            durations = np.diff(t)
            if not np.all(np.isfinite(durations)) or np.any(durations <= 0):
                raise ConfigError("times: must be finite and strictly increasing")
        else:
            d = np.asarray(dt, dtype=np.float64)
            durations = np.full(frames, float(d)) if d.ndim == 0 else d
            if durations.shape != (frames,):
                raise ShapeError(
                    f"dt: expected a scalar or {frames} frame durations, got shape {d.shape}"
                )
            if not np.all(np.isfinite(durations)) or np.any(durations <= 0):
                raise ConfigError(f"dt: frame durations must be finite and > 0, got {dt!r}")
        return np.ascontiguousarray(durations, dtype=self.dtype)

    @staticmethod
    def _substeps(substeps: int) -> int:
        if (
            not isinstance(substeps, (int, np.integer))
            or isinstance(substeps, bool)
            or substeps < 1
        ):
            raise ConfigError(f"substeps: must be an integer >= 1, got {substeps!r}")
        return int(substeps)

    def _start(self, s0: ArrayLike | None, batch: int, use_state: bool) -> Array:
        n = self.n_neurons
        if s0 is None and use_state and self._state is not None:
            s0 = self._state
        if s0 is None:
            return np.zeros((batch, n), dtype=self.dtype)
        start = np.asarray(s0, dtype=self.dtype)
        if start.shape == (n,):
            start = np.broadcast_to(start, (batch, n))
        if start.shape != (batch, n):
            raise ShapeError(
                f"s0: expected shape ({n},) or ({batch}, {n}) for a batch of {batch}, "
                f"got {np.shape(s0)}"
                + ("; call reset() to drop the running state" if use_state else "")
            )
        return np.ascontiguousarray(start)

    def _problem_params(self) -> dict[str, Array]:
        return {
            name: np.ascontiguousarray(self.params[name], dtype=self.dtype) for name in PARAM_NAMES
        }

    # ----------------------------------------------------------------- simulation
    def run(
        self,
        x: ArrayLike,
        dt: ArrayLike | None = None,
        *,
        times: ArrayLike | None = None,
        substeps: int = 1,
        s0: ArrayLike | None = None,
        return_states: bool = False,
    ) -> Any:
        """Integrate the input frames ``x`` ([T, n_in] or [B, T, n_in]) and return the outputs.

        Starts from ``s0`` if given, else from the running :attr:`state` (zeros after
        :meth:`reset`), and leaves the final state in :attr:`state`. Returns ``y`` shaped like
        ``x`` with n_out channels, or ``(y, states)`` with ``return_states=True`` (states at the
        end of every frame, [T, N] or [B, T, N]).
        """
        xs, unbatched = self._inputs(x)
        durations = self._durations(xs.shape[1], dt, times)
        start = self._start(s0, xs.shape[0], use_state=True)
        problem = Problem(
            params=self._problem_params(),
            activation=self.activation,
            integrator=self.integrator,
            substeps=self._substeps(substeps),
            xs=xs,
            durations=durations,
            start=start,
        )
        y, final, states = self._backend.forward(problem, return_states)
        self._state = final[0] if unbatched else final
        if unbatched:
            y = y[0]
            states = None if states is None else states[0]
        return (y, states) if return_states else y

    def _fit_problem(
        self,
        x: ArrayLike,
        target: ArrayLike,
        dt: ArrayLike | None,
        times: ArrayLike | None,
        substeps: int,
        truncation: int | None,
        s0: ArrayLike | None,
    ) -> Problem:
        return self._loss_problem(x, target, dt, times, substeps, truncation, s0)[0]

    def _loss_problem(
        self,
        x: ArrayLike,
        target: ArrayLike,
        dt: ArrayLike | None,
        times: ArrayLike | None,
        substeps: int,
        truncation: int | None,
        s0: ArrayLike | None,
        recorded_states: ArrayLike | None = None,
    ) -> tuple[Problem, bool]:
        xs, unbatched = self._inputs(x)
        frames = xs.shape[1]
        targets = np.asarray(target)
        if unbatched:
            targets = targets[None] if targets.ndim == 2 else targets[None, None]
        if targets.shape != (xs.shape[0], frames, self.n_outputs):
            expected = (
                (frames, self.n_outputs) if unbatched else (xs.shape[0], frames, self.n_outputs)
            )
            raise ShapeError(f"target: expected shape {expected}, got {np.shape(target)}")
        targets = np.ascontiguousarray(targets, dtype=self.dtype)
        if not np.all(np.isfinite(targets)):
            raise ShapeError("target: contains NaN or inf; targets must be finite")
        if truncation is not None and (
            not isinstance(truncation, (int, np.integer))
            or isinstance(truncation, bool)
            or truncation < 1
        ):
            raise ConfigError(
                f"truncation: must be None (full BPTT) or an integer >= 1, got {truncation!r}"
            )
        durations = self._durations(frames, dt, times)
        start = self._start(s0, xs.shape[0], use_state=False)
        problem = Problem(
            params=self._problem_params(),
            activation=self.activation,
            integrator=self.integrator,
            substeps=self._substeps(substeps),
            xs=xs,
            durations=durations,
            start=start,
            targets=targets,
            truncation=None if truncation is None else int(truncation),
            recorded_states=self._recorded(recorded_states, xs.shape, unbatched, truncation),
        )
        return problem, unbatched

    def _recorded(
        self,
        states: ArrayLike | None,
        x_shape: tuple[int, ...],
        unbatched: bool,
        truncation: int | None,
    ) -> Array | None:
        if states is None:
            return None
        if truncation is None:
            raise ConfigError(
                "recorded_states: only used with truncation=K (they start the chunks); "
                "give truncation or leave recorded_states out"
            )
        array = np.asarray(states, dtype=self.dtype)
        if unbatched and array.ndim == 2:
            array = array[None]
        expected = (x_shape[0], x_shape[1], self.n_neurons)
        if array.shape != expected:
            shown = expected[1:] if unbatched else expected
            raise ShapeError(
                f"recorded_states: expected shape {shown} (the state at the end of every frame), "
                f"got {np.shape(states)}"
            )
        if not np.all(np.isfinite(array)):
            raise ShapeError("recorded_states: contains NaN or inf")
        return np.ascontiguousarray(array)

    def loss_and_grad(
        self,
        x: ArrayLike,
        target: ArrayLike | None,
        dt: ArrayLike | None = None,
        *,
        times: ArrayLike | None = None,
        substeps: int = 1,
        truncation: int | None = None,
        s0: ArrayLike | None = None,
        recorded_states: ArrayLike | None = None,
        output_grad: ArrayLike | None = None,
    ) -> tuple[float, dict[str, Array]]:
        """Mean squared error of the outputs against ``target`` and its exact gradient.

        ``target`` has the batch form of ``x`` with n_out channels. The gradient comes from
        adjoint backpropagation through every substep; ``truncation=K`` cuts it every K frames.
        Starts from ``s0`` (default zeros; the running state is neither used nor changed).
        Returns ``(loss, grads)`` with grads for W, tau, theta, gain, U, V, c and s0.

        ``recorded_states`` ([T, N] or [B, T, N], with ``truncation``): the state at the end of
        every frame as it was recorded when the frames were run (e.g. by an online loop, with
        the parameters of that time). Chunk c >= 1 then starts from the recorded state at its
        first frame instead of a fresh forward pass: the seed's cached-history training, and
        what lets every chunk start at once. The loss is then that of the chunks so started.

        ``output_grad`` (instead of ``target``, same shape): loss injection (the seed's
        UPowerNetwork). The caller supplies G = ∂L/∂y for every frame's output (e.g. from a
        reinforcement signal) and the gradients are the exact vector-Jacobian product Gᵀ·∂y/∂θ;
        the returned "loss" is the surrogate Σ G ⊙ y, whose gradient that is. It runs through
        every backend unchanged: the forward outputs y give the target y − (count/2)·G, whose
        mean-squared-error gradient with respect to y is exactly G up to one rounding of y.
        """
        if (target is None) == (output_grad is None):
            raise ConfigError("target/output_grad: give exactly one of target and output_grad")
        if output_grad is not None:
            return self._injected_loss_and_grad(
                x, output_grad, dt, times, substeps, truncation, s0, recorded_states
            )
        assert target is not None  # exactly one of target and output_grad, checked above
        problem, unbatched = self._loss_problem(
            x, target, dt, times, substeps, truncation, s0, recorded_states
        )
        loss, grads = self._backend.loss_and_grad(problem)
        if unbatched:
            grads["s0"] = grads["s0"][0]
        return float(loss), grads

    def _injected_loss_and_grad(
        self,
        x: ArrayLike,
        output_grad: ArrayLike,
        dt: ArrayLike | None,
        times: ArrayLike | None,
        substeps: int,
        truncation: int | None,
        s0: ArrayLike | None,
        recorded_states: ArrayLike | None,
    ) -> tuple[float, dict[str, Array]]:
        if recorded_states is not None:
            raise ConfigError(
                "output_grad: cannot be combined with recorded_states (the injected gradient "
                "refers to the outputs of a fresh forward pass)"
            )
        xs, unbatched = self._inputs(x)
        grad = np.asarray(output_grad, dtype=np.float64)
        shape = (xs.shape[0], xs.shape[1], self.n_outputs)
        if unbatched:
            grad = grad[None] if grad.ndim == 2 else grad
        if grad.shape != shape:
            shown = shape[1:] if unbatched else shape
            raise ShapeError(f"output_grad: expected shape {shown}, got {np.shape(output_grad)}")
        if not np.all(np.isfinite(grad)):
            raise ShapeError("output_grad: contains NaN or inf")
        problem, _ = self._loss_problem(xs, np.zeros(shape), dt, times, substeps, truncation, s0)
        y, _, _ = self._backend.forward(problem, return_states=False)
        count = grad.size
        problem.targets = np.ascontiguousarray(y - 0.5 * count * grad, dtype=self.dtype)
        _, grads = self._backend.loss_and_grad(problem)
        if unbatched:
            grads["s0"] = grads["s0"][0]
        return float(np.sum(grad * y)), grads

    # ----------------------------------------------------------------- training
    def _trainable_order(self) -> list[str]:
        return [name for name in TRAINABLE_NAMES if name in self.trainable]

    def trainable_vector(self) -> NDArray[np.float64]:
        """The trained parameters as one flat float64 vector (τ as ρ = softplus⁻¹(τ − τ_min)),
        in the order W, tau, theta, gain, U, V, c (trained names only)."""
        parts = []
        for name in self._trainable_order():
            value = self.params[name].astype(np.float64)
            if name == "tau":
                value = _inverse_softplus(value - self.tau_min)
            parts.append(value.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def trainable_gradient(
        self, raw: NDArray[np.float64], grads: Mapping[str, Array]
    ) -> NDArray[np.float64]:
        """Flatten ``grads`` (from :meth:`loss_and_grad`) like :meth:`trainable_vector`, applying
        the chain rule for ρ at the vector ``raw``."""
        parts, offset = [], 0
        for name in self._trainable_order():
            g = np.asarray(grads[name], dtype=np.float64).ravel()
            if name == "tau":
                g = g * _sigmoid(raw[offset : offset + g.size])
            parts.append(g)
            offset += g.size
        return np.concatenate(parts) if parts else np.zeros(0)

    def set_trainable_vector(self, raw: NDArray[np.float64]) -> None:
        """Write a vector laid out like :meth:`trainable_vector` back into :attr:`params`."""
        offset = 0
        for name in self._trainable_order():
            shape = self.params[name].shape
            size = int(np.prod(shape))
            value = raw[offset : offset + size].reshape(shape)
            if name == "tau":
                value = self.tau_min + _softplus(value)
            if name == "W":
                value = value * self.params["mask"]
            self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)
            offset += size

    def fit(
        self,
        x: ArrayLike,
        target: ArrayLike,
        dt: ArrayLike | None = None,
        *,
        times: ArrayLike | None = None,
        substeps: int = 1,
        epochs: int = 100,
        lr: float = 1e-2,
        optimizer: str = "adam",
        truncation: int | None = None,
        s0: ArrayLike | None = None,
        clip_norm: float | None = None,
        momentum: float = 0.0,
        progress: bool = False,
        callback: Callable[[int, float], None] | None = None,
    ) -> dict[str, list[float]]:
        """Train the :attr:`trainable` parameters by full-batch gradient descent.

        Each epoch is one :meth:`loss_and_grad` over the whole sequence (truncated every
        ``truncation`` frames) and one optimiser step in Rust (``adam`` or ``sgd`` with
        ``momentum``; ``clip_norm`` clips the gradient norm). Returns
        ``{"loss": [...], "grad_norm": [...]}`` with the loss before each epoch's update.
        ``callback(epoch, loss)`` runs after every epoch; ``progress=True`` shows a bar.
        """
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ConfigError(f"epochs: must be an integer >= 0, got {epochs!r}")
        _choice("optimizer", optimizer, OPTIMIZERS)
        raw = self.trainable_vector()
        opt = _native.Optimizer(optimizer, raw.size, lr, momentum=momentum, clip_norm=clip_norm)
        history: dict[str, list[float]] = {"loss": [], "grad_norm": []}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(epochs), desc="fit", unit="epoch")
        epoch_counter = iter(range(int(epochs)))

        def on_epoch(loss: float) -> None:
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                bar.update(1)
            if callback is not None:
                callback(next(epoch_counter), loss)

        try:
            if self._backend.asynchronous:

                def make_problem() -> Problem:
                    return self._fit_problem(x, target, dt, times, substeps, truncation, s0)

                self._backend.fit_loop(  # type: ignore[attr-defined]
                    self, make_problem, int(epochs), opt, raw, history, on_epoch
                )
                return history
            for epoch in range(int(epochs)):
                loss, grads = self.loss_and_grad(
                    x, target, dt, times=times, substeps=substeps, truncation=truncation, s0=s0
                )
                norm = opt.step(raw, self.trainable_gradient(raw, grads))
                self.set_trainable_vector(raw)
                history["loss"].append(loss)
                history["grad_norm"].append(norm)
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    bar.update(1)
                if callback is not None:
                    structure = self.structure_version
                    callback(epoch, loss)
                    if self.structure_version != structure:
                        # the callback changed the connectivity (e.g. StructuralPlasticity):
                        # continue from the parameters it left (same layout, same moments)
                        raw[:] = self.trainable_vector()
        finally:
            if bar is not None:
                bar.close()
        return history

    # ----------------------------------------------------------------- files
    def metadata(self) -> dict[str, Any]:
        """The non-array settings, as saved next to the arrays."""
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "activation": self.activation,
            "integrator": self.integrator,
            "readout": self.readout,
            "trainable": sorted(self.trainable),
            "tau_min": self.tau_min,
            "dtype": str(self.dtype),
            "seed": self.seed,
            "density": self.density,
            "backend": self.backend_record(),
        }

    def backend_record(self) -> dict[str, Any]:
        """The backend's name and the options that mean the same on another machine (thread
        and worker counts, staleness, timeouts; never endpoints or keys), as saved with the
        model and restored by :meth:`load`."""
        portable = {"threads", "sparse", "workers", "max_staleness", "timeout", "heartbeat"}
        options = {
            key: value
            for key, value in self._backend.options().items()
            if key in portable
            and value is not None
            and isinstance(value, (bool, int, float))
            and not (key == "workers" and isinstance(value, bool))
        }
        return {"name": self._backend.name, "options": options}

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """What :meth:`save` writes, as a dict of plain arrays (keys start with ``prefix``)."""
        arrays: dict[str, np.ndarray] = {prefix + name: self.params[name] for name in PARAM_NAMES}
        arrays[prefix + "metadata"] = np.array(json.dumps(self.metadata(), sort_keys=True))
        if self._state is not None:
            arrays[prefix + "state"] = self._state
        return arrays

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        prefix: str = "",
        source: str = "",
        backend: str | Backend | None = None,
        **backend_options: Any,
    ) -> CTRNN:
        """Rebuild a network from :meth:`to_arrays` output (or an opened ``.npz``).

        ``backend=None`` restores the backend the network was saved with (its name and portable
        options, see :meth:`backend_record`; files without one get ``auto``); a name or object
        overrides it, with ``backend_options``.
        """
        where = source or "arrays"
        if prefix + "metadata" not in arrays:
            raise ConfigError(f"{where}: not an rnnlab CTRNN file (no metadata entry)")
        meta = json.loads(str(arrays[prefix + "metadata"]))
        if meta.get("format") != FILE_FORMAT:
            raise ConfigError(f"{where}: format {meta.get('format')!r} is not {FILE_FORMAT!r}")
        if meta.get("version") != FILE_VERSION:
            raise ConfigError(
                f"{where}: file version {meta.get('version')!r}; "
                f"this rnnlab reads version {FILE_VERSION}"
            )
        params = {name: np.array(arrays[prefix + name]) for name in PARAM_NAMES}
        state = np.array(arrays[prefix + "state"]) if prefix + "state" in arrays else None
        if backend is None:
            saved = meta.get("backend") or {}
            backend = saved.get("name", "auto")
            if not isinstance(backend, str):
                raise ConfigError(f"{where}: backend name must be a string, got {backend!r}")
            backend_options = {**dict(saved.get("options") or {}), **backend_options}
        net = cls.from_params(
            params,
            activation=meta["activation"],
            integrator=meta["integrator"],
            readout=meta["readout"],
            trainable=meta["trainable"],
            tau_min=meta["tau_min"],
            backend=backend,
            **backend_options,
        )
        net.params = params
        net.seed = meta.get("seed")
        net.density = float(meta.get("density", net.density))
        net._state = state
        return net

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the parameters (and running state) to an ``.npz`` file with JSON metadata.

        No pickle: arrays are plain float arrays and the metadata is a JSON string. The write is
        atomic (temporary file, then rename).
        """
        return write_npz_atomic(path, self.to_arrays())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        backend: str | Backend | None = None,
        **backend_options: Any,
    ) -> CTRNN:
        """Read a file written by :meth:`save` (never unpickles anything). The network gets the
        backend it was saved with unless ``backend`` says otherwise (see :meth:`from_arrays`)."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays(data, source=str(path), backend=backend, **backend_options)
