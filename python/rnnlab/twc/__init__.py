"""The tap-withdrawal circuit (TWC) with FIURI neurons, trained on MountainCarContinuous.

- :class:`TWC` / :class:`FiuriCircuit` — torch circuits from a wiring file, with ``"exact"``,
  ``"soft"`` (upstream V2) and ``"straight_through"`` dynamics; ``step`` / ``unroll``
  (functional, batched) and ``policy`` (stateful); parameter JSON interchange.
- :mod:`rnnlab.twc.reference` — an independent numpy reference of the exact dynamics.
- :class:`BatchedMountainCar` — numpy physics equal to Gymnasium's ``MountainCarContinuous-v0``.
- :func:`train_evolution` (CMA-ES), :class:`TD3Trainer` (TD3 / DDPG with sequence replay).
- :func:`evaluate` — the fixed-seed evaluation protocol.
- :func:`read_ariel_xml` / :func:`write_ariel_xml` — the original FIURI engine's XML models.

torch is imported lazily: ``import rnnlab.twc`` stays cheap until a name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "TWC",
    "BatchedMountainCar",
    "BinaryInterface",
    "CircuitState",
    "EvolutionConfig",
    "FiuriCircuit",
    "TD3Config",
    "TD3Trainer",
    "Wiring",
    "evaluate",
    "load_policy",
    "load_wiring",
    "read_ariel_xml",
    "train_evolution",
    "twc_wiring",
    "twc_wiring_differences",
    "write_ariel_xml",
]

_HOMES = {
    "TWC": "circuit",
    "FiuriCircuit": "circuit",
    "CircuitState": "circuit",
    "BatchedMountainCar": "mountain_car",
    "BinaryInterface": "interfaces",
    "EvolutionConfig": "evolution",
    "train_evolution": "evolution",
    "TD3Config": "td3",
    "TD3Trainer": "td3",
    "load_policy": "td3",
    "evaluate": "rollout",
    "Wiring": "wiring",
    "load_wiring": "wiring",
    "twc_wiring": "wiring",
    "read_ariel_xml": "ariel_xml",
    "write_ariel_xml": "ariel_xml",
    "twc_wiring_differences": "ariel_xml",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"rnnlab.twc.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'rnnlab.twc' has no attribute {name!r}")
