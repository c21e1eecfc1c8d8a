"""Population evaluation and a seeded evolution strategy for CTRNNs.

CTRNNs are often evolved rather than trained by gradient. :class:`Population` holds P parameter
sets of one architecture and runs them on the same inputs (or one input batch per member) in
one call: the P parameter sets are stacked once, and one Rust call spreads the members over
threads (GIL released, each member on one thread, taken from a shared counter), so P small
networks use every core without paying a Python call per member. :func:`evolve` runs the
OpenAI evolution strategy (antithetic Gaussian perturbations of the trainable vector, centred
rank fitness shaping, a plain gradient-ascent step) on top of it, seeded and reproducible.

Example (evolve a 6-neuron oscillator; see ``examples/ctrnn/evolve_oscillator.py``)::

    net = CTRNN(6, 0, 1, activation="tanh", readout="linear", seed=0)
    t = np.arange(200) * 0.1
    target = np.sin(2 * np.pi * t / 4.0)[:, None]
    s0 = np.full(6, 0.5)

    def fitness(population):
        y = population.run(np.zeros((200, 0)), dt=0.1, substeps=2, s0=s0)   # [P, T, 1]
        return -np.mean((y - target) ** 2, axis=(1, 2))

    history = evolve(net, fitness, popsize=32, generations=100, sigma=0.05, lr=0.03, seed=0)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rnnlab import _native
from rnnlab.ctrnn.backends.local import kernel_arrays
from rnnlab.ctrnn.model import CTRNN
from rnnlab.errors import ConfigError, ShapeError

__all__ = ["Population", "evolve"]

KERNEL_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")


class Population:
    """P networks of one architecture, evaluated together across threads.

    Args:
        params_batch: a sequence of P parameter dicts (the keys of :attr:`CTRNN.params`), or
            one dict whose arrays have a leading axis of length P.
        activation, integrator: as for :class:`CTRNN` (shared by all members).
        threads: threads over which members are spread (default ``RNNLAB_NUM_THREADS`` or the
            core count).

    The members' parameters are stacked when the population is made: changing a member's
    parameters afterwards does not change what :meth:`run` computes (make a new population).
    """

    def __init__(
        self,
        params_batch: Sequence[Mapping[str, ArrayLike]] | Mapping[str, ArrayLike],
        *,
        activation: str = "logistic",
        integrator: str = "euler",
        threads: int | None = None,
    ) -> None:
        members: list[Mapping[str, ArrayLike]]
        if isinstance(params_batch, Mapping):
            sizes = {np.shape(v)[0] for v in params_batch.values()}
            if len(sizes) != 1:
                raise ShapeError(f"params_batch: leading axes differ: {sorted(sizes)}")
            size = sizes.pop()
            members = [{k: np.asarray(v)[p] for k, v in params_batch.items()} for p in range(size)]
        else:
            members = list(params_batch)
        if not members:
            raise ConfigError("params_batch: needs at least one parameter set")
        self.members = [
            CTRNN.from_params(
                m, activation=activation, integrator=integrator, trainable=(), backend="dense"
            )
            for m in members
        ]
        first = self.members[0]
        for k, net in enumerate(self.members):
            if (net.n_neurons, net.n_inputs, net.n_outputs, net.dtype) != (
                first.n_neurons,
                first.n_inputs,
                first.n_outputs,
                first.dtype,
            ):
                raise ShapeError(
                    f"params_batch[{k}]: shape or dtype differs from member 0 "
                    f"({first.n_neurons} neurons, {first.n_inputs} inputs, {first.n_outputs} "
                    f"outputs, {first.dtype})"
                )
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads: must be None or an integer >= 1, got {threads!r}")
        env = os.environ.get("RNNLAB_NUM_THREADS", "").strip()
        default = int(env) if env.isdigit() and int(env) >= 1 else (os.cpu_count() or 1)
        self.threads = threads or default
        # The members' kernel arrays stacked along a leading member axis, made once.
        self._stacked = {
            k: np.ascontiguousarray(np.stack([net.params[k] for net in self.members]))
            for k in KERNEL_NAMES
        }

    def __len__(self) -> int:
        return len(self.members)

    def run(
        self,
        x: ArrayLike,
        dt: ArrayLike | None = None,
        *,
        times: ArrayLike | None = None,
        substeps: int = 1,
        s0: ArrayLike | None = None,
        per_member: bool = False,
    ) -> NDArray[Any]:
        """Outputs of every member: ``[P, T, n_out]`` or ``[P, B, T, n_out]``.

        ``x`` is shared by all members ([T, n_in] or [B, T, n_in]), or with ``per_member=True``
        one input per member ([P, T, n_in] or [P, B, T, n_in]). Each member starts from ``s0``
        (default zeros); members' running states are not used or changed. Equal, bit for bit,
        to running each member on its own.
        """
        first = self.members[0]
        inputs = np.asarray(x)
        if per_member:
            if inputs.shape[0] != len(self):
                raise ShapeError(
                    f"x: per_member=True needs a leading axis of {len(self)}, got {inputs.shape}"
                )
            prepared = [first._inputs(inputs[p]) for p in range(len(self))]
        else:
            prepared = [first._inputs(inputs)] * len(self)
        xs0, unbatched = prepared[0]
        durations = first._durations(xs0.shape[1], dt, times)
        start = first._start(s0, xs0.shape[0], use_state=False)
        steps = first._substeps(substeps)
        if per_member:
            xs = np.ascontiguousarray(np.stack([prepared_x for prepared_x, _ in prepared]))
        else:
            xs = xs0
        y = _native.ctrnn_forward_population(
            *kernel_arrays(self._stacked),
            xs,
            durations,
            start,
            steps,
            first.activation,
            first.integrator,
            per_member=per_member,
            threads=self.threads,
        )
        return y[:, 0] if unbatched else y


def _centred_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    ranks = np.empty(values.size)
    ranks[np.argsort(values, kind="stable")] = np.arange(values.size)
    return ranks / max(values.size - 1, 1) - 0.5


def evolve(
    net: CTRNN,
    fitness: Callable[[Population], ArrayLike],
    *,
    popsize: int = 32,
    generations: int = 100,
    sigma: float = 0.05,
    lr: float = 0.02,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, list[float]]:
    """Maximise ``fitness`` over ``net``'s trainable parameters with the OpenAI evolution strategy.

    Each generation samples ``popsize / 2`` Gaussian directions ε (antithetic pairs ±ε, so
    ``popsize`` must be even), evaluates the population θ ± σε with ``fitness(population)``
    (which returns one number per member, higher is better), shapes the fitness into centred
    ranks, and moves θ by ``lr / (popsize · σ) · Σ rank_i ε_i``. The trainable vector is
    :meth:`CTRNN.trainable_vector` (τ through ρ, W on its mask). ``net`` ends at the final θ.
    The population handed to ``fitness`` has ``popsize + 1`` members: member 0 is the unperturbed
    centre θ, then the perturbed ones. Returns ``{"mean_fitness", "best_fitness",
    "center_fitness"}`` per generation (mean and best over the perturbed members).
    """
    if not isinstance(popsize, int) or popsize < 2 or popsize % 2:
        raise ConfigError(f"popsize: must be an even integer >= 2, got {popsize!r}")
    if not isinstance(generations, int) or generations < 0:
        raise ConfigError(f"generations: must be an integer >= 0, got {generations!r}")
    for name, value in (("sigma", sigma), ("lr", lr)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ConfigError(f"{name}: must be > 0, got {value!r}")
    rng = np.random.default_rng(seed)
    theta = net.trainable_vector()
    scratch = CTRNN.from_params(
        net.params,
        activation=net.activation,
        integrator=net.integrator,
        readout=net.readout,
        trainable=net.trainable,
        tau_min=net.tau_min,
        backend="dense",
    )

    def params_at(vector: NDArray[np.float64]) -> dict[str, NDArray[Any]]:
        scratch.set_trainable_vector(vector)
        return {k: v.copy() for k, v in scratch.params.items()}

    history: dict[str, list[float]] = {"mean_fitness": [], "best_fitness": [], "center_fitness": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=generations, desc="evolve", unit="gen")
    try:
        for _ in range(generations):
            half = rng.standard_normal((popsize // 2, theta.size))
            eps = np.concatenate([half, -half])
            members = [params_at(theta)] + [params_at(theta + sigma * e) for e in eps]
            population = Population(
                members, activation=net.activation, integrator=net.integrator, threads=threads
            )
            scores = np.asarray(fitness(population), dtype=np.float64)
            if scores.shape != (popsize + 1,):
                raise ShapeError(
                    f"fitness: must return one value per member ({popsize + 1}), "
                    f"got shape {scores.shape}"
                )
            center, scores = scores[0], scores[1:]
            theta = theta + lr / (popsize * sigma) * (_centred_ranks(scores) @ eps)
            history["mean_fitness"].append(float(scores.mean()))
            history["best_fitness"].append(float(scores.max()))
            history["center_fitness"].append(float(center))
            if bar is not None:
                bar.set_postfix(center=f"{center:.4g}", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    net.set_trainable_vector(theta)
    return history
