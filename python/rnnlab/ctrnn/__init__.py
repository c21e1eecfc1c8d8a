"""Continuous-time recurrent neural networks with Rust forward and truncated-BPTT kernels.

- :class:`CTRNN` — the network (run, loss_and_grad, fit, save/load).
- :class:`OnlineTrainer` — one-step-ahead online training on a stream (truncated BPTT).
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
]
