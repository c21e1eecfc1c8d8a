"""Execution backends of :class:`~rnnlab.ctrnn.CTRNN`: one interface, identical gradients.

``CTRNN(..., backend=NAME, **options)`` with NAME one of :data:`BACKENDS` (see
``docs/backends.md``). Every backend implements the same ``forward`` and ``loss_and_grad`` on a
:class:`Problem`; ``run``, ``loss_and_grad``, ``fit`` and ``OnlineTrainer`` work on all of them,
and for the same parameters, data and truncation they return the same loss and gradients to
round-off.
"""

from __future__ import annotations

from typing import Any

from rnnlab.ctrnn.backends.local import (
    Backend,
    DenseBackend,
    Problem,
    SparseBackend,
    ThreadedBackend,
)
from rnnlab.errors import ConfigError

__all__ = [
    "BACKENDS",
    "SPARSE_DENSITY_THRESHOLD",
    "SPARSE_MIN_NEURONS",
    "Backend",
    "DenseBackend",
    "Problem",
    "SparseBackend",
    "ThreadedBackend",
    "make_backend",
]

BACKENDS = ("auto", "dense", "sparse", "threaded", "distributed", "async")

#: ``auto`` picks ``sparse`` at or below this mask density (measured, see docs/backends.md).
SPARSE_DENSITY_THRESHOLD = 0.2
#: ... and from this many neurons on (below, both kernels take microseconds per substep).
SPARSE_MIN_NEURONS = 64


def make_backend(name: str, *, density: float = 1.0, n_neurons: int = 0, **options: Any) -> Backend:
    """The backend called ``name`` with ``options`` (``auto`` resolves from the density)."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ConfigError(f"backend: unknown value {name!r}; allowed: {', '.join(BACKENDS)}")
    if name == "auto":
        sparse = density <= SPARSE_DENSITY_THRESHOLD and n_neurons >= SPARSE_MIN_NEURONS
        name = "sparse" if sparse else "dense"
    allowed = {
        "dense": {"threads"},
        "sparse": {"threads"},
        "threaded": {"threads", "sparse"},
        "distributed": {
            "workers",
            "endpoint",
            "min_workers",
            "threads",
            "timeout",
            "heartbeat",
            "start_timeout",
            "sparse",
            "curve_keys",
        },
    }
    allowed["async"] = allowed["distributed"] | {"max_staleness"}
    unknown = set(options) - allowed[name]
    if unknown:
        raise ConfigError(
            f"backend options: {sorted(unknown)} not understood by backend {name!r}; "
            f"allowed: {', '.join(sorted(allowed[name]))}"
        )
    if name == "dense":
        return DenseBackend(**options)
    if name == "sparse":
        return SparseBackend(**options)
    if name == "threaded":
        return ThreadedBackend(**options)
    from rnnlab.ctrnn.backends.distributed import AsyncBackend, DistributedBackend

    if name == "distributed":
        return DistributedBackend(**options)
    return AsyncBackend(**options)
