"""Continuous-time recurrent neural networks with Rust forward and truncated-BPTT kernels.

- :class:`CTRNN` — the network (run, loss_and_grad, fit, save/load).
- :class:`OnlineTrainer` — one-step-ahead online training on a stream (truncated BPTT).
- :class:`Population`, :func:`evolve` — P networks evaluated across threads; an evolution
  strategy on top (``docs/backends.md``).
- :class:`StructuralPlasticity` — try-and-roll-back add/remove-one-synapse moves.
- :mod:`rnnlab.ctrnn.backends` — execution backends (dense, sparse, threaded, distributed,
  async) behind ``CTRNN(..., backend=...)``.
- :mod:`rnnlab.ctrnn.reference` — an independent numpy implementation of the same equations.
- :mod:`rnnlab.ctrnn.torch_reference` — the same equations in PyTorch (autograd, speed checks).
"""

from __future__ import annotations

from rnnlab.ctrnn.model import (
    ACTIVATIONS,
    CTRNN,
    DTYPES,
    INTEGRATORS,
    OPTIMIZERS,
    PARAM_NAMES,
    READOUTS,
    TRAINABLE_NAMES,
)
from rnnlab.ctrnn.online import OnlineTrainer
from rnnlab.ctrnn.plasticity import StructuralPlasticity
from rnnlab.ctrnn.population import Population, evolve

__all__ = [
    "ACTIVATIONS",
    "CTRNN",
    "DTYPES",
    "INTEGRATORS",
    "OPTIMIZERS",
    "PARAM_NAMES",
    "READOUTS",
    "TRAINABLE_NAMES",
    "OnlineTrainer",
    "Population",
    "StructuralPlasticity",
    "evolve",
]
