"""``distributed`` and ``async``: a coordinator and worker processes over ZeroMQ.

``distributed`` is the seed's BulkPowerNetwork done properly. Per train step the coordinator
runs one forward pass (for the chunk start states), cuts the window into truncated-BPTT chunks,
and sends each worker one message with the current parameter version and its share of the
chunks (start states, inputs, targets); each worker returns one summed, weighted gradient and
loss. Parameters travel only to workers that do not have the current version. The results are
summed in a fixed order, so the gradient equals ``dense``'s to round-off.

``async`` is the seed's AsyncPowerNetwork made safe: ``fit`` does not wait for each step's
gradient. Every epoch submits a gradient computation at the current parameter version and then
applies whatever gradients have arrived; a gradient computed at version v and arriving when
the parameters are at version c is applied if c − v ≤ ``max_staleness`` and dropped (and
counted) otherwise. At most ``max_staleness + 1`` steps are in flight (the loop waits for the
oldest beyond that), so the backlog is bounded. ``max_staleness=0`` is synchronous training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from rnnlab.ctrnn.backends.chunks import ChunkGroup, combine_results, split_tasks
from rnnlab.ctrnn.backends.local import Backend, Problem
from rnnlab.ctrnn.backends.pool import BatchResult, WorkerPool
from rnnlab.errors import ConfigError

if TYPE_CHECKING:
    from rnnlab.ctrnn.model import CTRNN

__all__ = ["AsyncBackend", "DistributedBackend", "StalenessGate"]

Array = NDArray[np.floating[Any]]
PARAM_NAMES = ("W", "mask", "tau", "theta", "gain", "U", "V", "c")


def _whole_groups(problem: Problem) -> list[ChunkGroup]:
    assert problem.targets is not None
    batch = problem.xs.shape[0]
    return [
        ChunkGroup(
            rows=[(b, 0) for b in range(batch)],
            starts=problem.start,
            x=problem.xs,
            target=problem.targets,
            dts=problem.durations,
            weight=1.0,
        )
    ]


class DistributedBackend(Backend):
    """Chunks of each train step computed by worker processes (see the module docstring).

    Args:
        workers: local worker processes to spawn (default 2); 0 to rely on remote workers.
        endpoint: where the coordinator binds (default a free loopback port); remote workers
            run ``rnnlab worker --connect <endpoint>``. See :attr:`endpoint` for the bound one.
        min_workers: workers to wait for before the first step (default: ``workers``, at
            least 1).
        threads: Rust threads per local worker (default: cores / workers).
        timeout: seconds after which a silent or stalled worker's chunks are re-sent.
        heartbeat: seconds between heartbeats.
        sparse: run the CSR kernels in the workers.
        curve_keys: a folder from ``rnnlab worker keygen``; required for non-loopback endpoints.
    """

    name = "distributed"

    def __init__(
        self,
        *,
        workers: int = 2,
        endpoint: str = "tcp://127.0.0.1:*",
        min_workers: int | None = None,
        threads: int | None = None,
        timeout: float = 30.0,
        heartbeat: float = 0.5,
        start_timeout: float = 60.0,
        sparse: bool = False,
        curve_keys: str | None = None,
    ) -> None:
        super().__init__(threads=threads)
        self.sparse = bool(sparse)
        self.pool = WorkerPool(
            workers,
            endpoint=endpoint,
            threads=threads,
            timeout=timeout,
            heartbeat=heartbeat,
            start_timeout=start_timeout,
            curve_keys=curve_keys,
        )
        wanted = workers if min_workers is None else min_workers
        if wanted > workers:
            self.pool.wait_for_workers(wanted, start_timeout)
        self._requested = {"workers": workers, "timeout": timeout, "sparse": self.sparse}
        self.param_version = 0
        self._sent: dict[str, Array] | None = None
        self._model: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        """The address workers connect to."""
        return self.pool.endpoint

    def options(self) -> dict[str, Any]:
        return {**self._requested, "endpoint": self.endpoint}

    def _publish(self, problem: Problem) -> None:
        """Bump the parameter version when the parameters or model settings changed."""
        params = problem.params
        model = {
            "activation": problem.activation,
            "integrator": problem.integrator,
            "substeps": problem.substeps,
            "sparse": self.sparse,
        }
        if (
            self._sent is None
            or model != self._model
            or any(not np.array_equal(self._sent[name], params[name]) for name in PARAM_NAMES)
        ):
            if self._sent is not None:
                self.param_version += 1
            self._sent = {name: params[name].copy() for name in PARAM_NAMES}
            self._model = model
            self.pool.set_params(self._sent, self.param_version, model)

    def submit(self, problem: Problem) -> tuple[int, list[list[ChunkGroup]]]:
        """Send one step's chunks to the workers; returns the batch id and the tasks."""
        assert problem.targets is not None
        self._publish(problem)
        groups = self.chunk_groups(problem) if problem.chunked else _whole_groups(problem)
        parts = max(1, len(self.pool.workers))
        tasks = split_tasks(groups, parts, problem.targets.size)
        return self.pool.submit(tasks), tasks

    @staticmethod
    def combine(
        problem: Problem, tasks: list[list[ChunkGroup]], done: BatchResult
    ) -> tuple[float, dict[str, Array]]:
        parts: list[tuple[list[tuple[int, int]], float, dict[str, Array], Array]] = []
        for groups, result in zip(tasks, done.results, strict=False):
            for i, group in enumerate(groups):
                grads: dict[str, Array] = (
                    result.grads if i == 0 else {k: 0.0 * v for k, v in result.grads.items()}
                )
                loss = result.loss if i == 0 else 0.0
                parts.append((group.rows, loss, grads, result.start_grads[i]))
        return combine_results(parts, problem.xs.shape[0], problem.shapes, problem.xs.dtype)

    def loss_and_grad(self, problem: Problem) -> tuple[float, dict[str, Array]]:
        batch_id, tasks = self.submit(problem)
        return self.combine(problem, tasks, self.pool.wait(batch_id))

    def close(self) -> None:
        self.pool.close()


class StalenessGate:
    """The ``async`` backend's rule: a gradient computed at parameter version ``computed`` and
    arriving at version ``current`` is applied when ``current − computed ≤ max_staleness``,
    else dropped; both are counted, with a histogram of applied staleness."""

    def __init__(self, max_staleness: int) -> None:
        if (
            not isinstance(max_staleness, int)
            or isinstance(max_staleness, bool)
            or max_staleness < 0
        ):
            raise ConfigError(f"max_staleness: must be an integer >= 0, got {max_staleness!r}")
        self.max_staleness = max_staleness
        self.applied = 0
        self.dropped = 0
        self.staleness: dict[int, int] = {}

    def admit(self, computed: int, current: int) -> bool:
        lag = current - computed
        if lag > self.max_staleness:
            self.dropped += 1
            return False
        self.applied += 1
        self.staleness[lag] = self.staleness.get(lag, 0) + 1
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "dropped": self.dropped,
            "staleness": dict(sorted(self.staleness.items())),
        }


class AsyncBackend(DistributedBackend):
    """``distributed`` whose ``fit`` applies gradients as they arrive (bounded staleness).

    ``run`` and ``loss_and_grad`` are synchronous (as ``distributed``); an
    :class:`~rnnlab.ctrnn.OnlineTrainer` therefore trains synchronously on this backend.
    After ``fit``, :attr:`gate` holds the applied/dropped counts.
    """

    name = "async"
    asynchronous = True

    def __init__(self, *, max_staleness: int = 1, **options: Any) -> None:
        super().__init__(**options)
        self.gate = StalenessGate(max_staleness)
        self._requested["max_staleness"] = max_staleness

    def fit_loop(
        self,
        net: CTRNN,
        make_problem: Any,
        epochs: int,
        opt: Any,
        raw: NDArray[np.float64],
        history: dict[str, list[float]],
        on_epoch: Any,
    ) -> None:
        """The training loop of :meth:`CTRNN.fit` on this backend."""
        self.gate = StalenessGate(self.gate.max_staleness)
        version = 0  # updates applied during this fit
        in_flight: dict[int, tuple[int, Problem, list[list[ChunkGroup]]]] = {}

        def handle(done: BatchResult) -> None:
            nonlocal version
            computed, problem, tasks = in_flight.pop(done.batch)
            if not self.gate.admit(computed, version):
                return
            loss, grads = self.combine(problem, tasks, done)
            norm = opt.step(raw, net.trainable_gradient(raw, grads))
            net.set_trainable_vector(raw)
            version += 1
            history["loss"].append(loss)
            history["grad_norm"].append(norm)
            history["staleness"].append(float(version - 1 - computed))
            on_epoch(loss)

        history.setdefault("staleness", [])
        for _ in range(epochs):
            problem = make_problem()
            batch_id, tasks = self.submit(problem)
            in_flight[batch_id] = (version, problem, tasks)
            for done in self.pool.completed(block=False):
                handle(done)
            while len(in_flight) > self.gate.max_staleness:
                oldest = min(in_flight)
                handle(self._wait_for(oldest))
        while in_flight:
            handle(self._wait_for(min(in_flight)))

    def _wait_for(self, batch_id: int) -> BatchResult:
        return self.pool.wait(batch_id)
