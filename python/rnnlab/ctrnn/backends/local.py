"""Backends that run in this process: ``dense``, ``sparse`` and ``threaded``.

All three call the Rust kernels of ``rnnlab._native`` with the GIL released. They differ in how
the recurrent weights are stored and how the work of one call is split over threads:

- ``dense``: the matrix kernels (the seed's SSMNetwork); batch rows are split over
  ``RNNLAB_NUM_THREADS`` threads when a call is large; a forward call with fewer rows than
  threads (a single sequence) splits the neurons instead, from N = 256 on.
- ``sparse``: the CSR kernels (the seed's HashNetwork idea, with index arrays instead of hash
  maps of raw pointers): every product costs one multiply-add per synapse.
- ``threaded``: the dense (or sparse) kernels, with the truncated-BPTT chunks of a window
  split over threads as well as the batch rows (the seed's PowerNetwork idea, in shared memory
  without serialisation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rnnlab import _native
from rnnlab.ctrnn.backends.chunks import ChunkGroup, combine_results, split_tasks, split_window
from rnnlab.errors import ConfigError

__all__ = [
    "Backend",
    "DenseBackend",
    "Problem",
    "SparseBackend",
    "ThreadedBackend",
    "group_loss_and_grad",
]

Array = NDArray[np.floating[Any]]
KERNEL_PARAM_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")
KernelArrays = tuple[Array, Array, Array, Array, Array, Array, Array]


def kernel_arrays(params: Mapping[str, Array]) -> KernelArrays:
    """W, tau, theta, gain, U, V, c: the kernels' first seven arguments, in their order."""
    return (
        params["W"],
        params["tau"],
        params["theta"],
        params["gain"],
        params["U"],
        params["V"],
        params["c"],
    )


@dataclass
class Problem:
    """Everything one ``loss_and_grad`` call needs, in kernel form (C-contiguous, one dtype)."""

    params: dict[str, Array]  # W, mask, tau, theta, gain, U, V, c
    activation: str
    integrator: str
    substeps: int
    xs: Array  # [B, T, n_in]
    durations: Array  # [T]
    start: Array  # [B, N]
    targets: Array | None = None  # [B, T, n_out]
    truncation: int | None = None
    #: states at the end of every frame as recorded when the window was run ([B, T, N]); when
    #: given, chunk c >= 1 starts from recorded_states[:, cK - 1] instead of a fresh forward pass.
    recorded_states: Array | None = None

    def kernel_params(self) -> KernelArrays:
        return kernel_arrays(self.params)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.params[name].shape for name in KERNEL_PARAM_NAMES}

    @property
    def chunked(self) -> bool:
        """Whether truncation cuts the window into more than one chunk per row."""
        return self.truncation is not None and self.xs.shape[1] > self.truncation


def _threads_option(threads: int | None) -> int | None:
    if threads is None:
        return None
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads: must be None or an integer >= 1, got {threads!r}")
    return int(threads)


def group_loss_and_grad(
    params: dict[str, Array],
    activation: str,
    integrator: str,
    substeps: int,
    group: ChunkGroup,
    *,
    sparse: bool = False,
    threads: int | None = None,
) -> tuple[float, dict[str, Array], Array]:
    """Loss and gradients of one group of chunks, weighted by the group's share of the count.

    Returns ``(weight × mean loss, weight × grads, start-state grads)``; the start-state
    gradients are the unweighted kernel's times the weight, like everything else.
    """
    loss, grads = _native.ctrnn_loss_and_grad(
        *kernel_arrays(params),
        group.x,
        group.dts,
        group.starts,
        group.target,
        substeps,
        activation,
        integrator,
        None,
        params["mask"],
        sparse=sparse,
        threads=threads,
    )
    w = group.weight
    scaled: dict[str, Array] = {name: grads[name] * w for name in KERNEL_PARAM_NAMES}
    return float(loss) * w, scaled, grads["s0"] * w


class Backend:
    """How a :class:`~rnnlab.ctrnn.CTRNN` runs its kernels. Subclasses override the two calls."""

    name = "dense"
    sparse = False
    #: ``fit`` hands the whole training loop to the backend (the ``async`` backend).
    asynchronous = False
    #: split a window's truncation chunks into a batch even without recorded states.
    split_chunks = False

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = _threads_option(threads)

    def options(self) -> dict[str, Any]:
        """The settings this backend was made with (for ``repr`` and records)."""
        return {"threads": self.threads}

    def forward(self, problem: Problem, return_states: bool) -> tuple[Array, Array, Array | None]:
        return _native.ctrnn_forward(
            *kernel_arrays(problem.params),
            problem.xs,
            problem.durations,
            problem.start,
            problem.substeps,
            problem.activation,
            problem.integrator,
            return_states,
            mask=problem.params["mask"],
            sparse=self.sparse,
            threads=self.threads,
        )

    def loss_and_grad(self, problem: Problem) -> tuple[float, dict[str, Array]]:
        assert problem.targets is not None
        if problem.chunked and (problem.recorded_states is not None or self.split_chunks):
            return self.run_groups(problem, self.chunk_groups(problem))
        loss, grads = _native.ctrnn_loss_and_grad(
            *kernel_arrays(problem.params),
            problem.xs,
            problem.durations,
            problem.start,
            problem.targets,
            problem.substeps,
            problem.activation,
            problem.integrator,
            problem.truncation,
            problem.params["mask"],
            sparse=self.sparse,
            threads=self.threads,
        )
        return float(loss), grads

    def run_groups(
        self, problem: Problem, groups: list[ChunkGroup]
    ) -> tuple[float, dict[str, Array]]:
        """Loss and gradients of a window from its chunk groups, computed in this process."""
        parts = []
        for group in groups:
            loss, grads, start_grads = group_loss_and_grad(
                problem.params,
                problem.activation,
                problem.integrator,
                problem.substeps,
                group,
                sparse=self.sparse,
                threads=self.threads,
            )
            parts.append((group.rows, loss, grads, start_grads))
        return combine_results(parts, problem.xs.shape[0], problem.shapes, problem.xs.dtype)

    def chunk_groups(self, problem: Problem) -> list[ChunkGroup]:
        """The chunk start states (recorded, or from one forward pass), then the chunks grouped
        for the kernel."""
        assert problem.targets is not None
        assert problem.truncation is not None
        states = problem.recorded_states
        if states is None:
            _, _, states = self.forward(problem, return_states=True)
        assert states is not None
        return split_window(
            problem.xs,
            problem.targets,
            problem.durations,
            problem.start,
            states,
            problem.truncation,
        )

    def close(self) -> None:
        """Release what the backend holds (threads and processes); idempotent."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class DenseBackend(Backend):
    """The single-threaded matrix kernel per sequence (batch rows may use several threads)."""

    name = "dense"


class SparseBackend(Backend):
    """CSR kernels: forward and backward cost proportional to the number of synapses."""

    name = "sparse"
    sparse = True


class ThreadedBackend(Backend):
    """Truncated-BPTT chunks (and batch rows) split over ``threads`` threads.

    ``threads`` defaults to ``RNNLAB_NUM_THREADS`` (else all cores). With ``truncation=K`` and a
    window longer than K frames, the chunk start states come from one forward pass (or from
    ``recorded_states``) and the chunks are shared among a pool of ``threads`` threads, each
    running the Rust kernel on its share with the GIL released; without truncation only batch
    rows can be split (the Rust kernel's own scoped threads; a single sequence's BPTT is
    sequential). The pool's threads persist between calls (fresh threads per call cost ~20 %
    more CPU: their first-touch page faults on the BPTT buffers) and are recreated in a forked
    child. ``sparse=True`` uses the CSR kernels.
    """

    name = "threaded"

    def __init__(self, *, threads: int | None = None, sparse: bool = False) -> None:
        super().__init__(threads=threads)
        if self.threads is None:
            env = os.environ.get("RNNLAB_NUM_THREADS", "").strip()
            self.threads = int(env) if env.isdigit() and int(env) >= 1 else (os.cpu_count() or 1)
        self.sparse = bool(sparse)
        self.split_chunks = self.threads > 1
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def options(self) -> dict[str, Any]:
        return {"threads": self.threads, "sparse": self.sparse}

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_pid != os.getpid():  # none yet, or forked
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rnnlab-threaded")
            self._pool_pid = os.getpid()
        return self._pool

    def run_groups(
        self, problem: Problem, groups: list[ChunkGroup]
    ) -> tuple[float, dict[str, Array]]:
        assert problem.targets is not None
        assert self.threads is not None
        tasks = split_tasks(groups, self.threads, problem.targets.size)

        def run(task: list[ChunkGroup]) -> list[tuple[Any, ...]]:
            out = []
            for group in task:
                loss, grads, start_grads = group_loss_and_grad(
                    problem.params,
                    problem.activation,
                    problem.integrator,
                    problem.substeps,
                    group,
                    sparse=self.sparse,
                    threads=1,
                )
                out.append((group.rows, loss, grads, start_grads))
            return out

        parts = [part for result in self._executor().map(run, tasks) for part in result]
        return combine_results(parts, problem.xs.shape[0], problem.shapes, problem.xs.dtype)

    def close(self) -> None:
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=True)
        self._pool = None
