"""Gated byte-level RNNs trained without BPTT, and a resumable, parallel sweep over them.

``RNNLayer`` and ``ByteLM`` (PyTorch) reproduce the upstream layer equations; ``train_run``
trains one configuration online; ``Sweep`` is the sweep folder (see ``docs/gated.md``).
Attributes are imported lazily so that ``rnnlab --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ByteLM",
    "LayerFlags",
    "RNNLayer",
    "Sweep",
    "TrainConfig",
    "embedded_corpus",
    "load_corpus",
    "ngram_conditional_entropies",
    "train_run",
]

_LOCATIONS = {
    "ByteLM": "rnnlab.gated.model",
    "LayerFlags": "rnnlab.gated.model",
    "RNNLayer": "rnnlab.gated.model",
    "Sweep": "rnnlab.gated.sweep",
    "TrainConfig": "rnnlab.gated.train",
    "train_run": "rnnlab.gated.train",
    "embedded_corpus": "rnnlab.gated.data",
    "load_corpus": "rnnlab.gated.data",
    "ngram_conditional_entropies": "rnnlab.gated.data",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'rnnlab.gated' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
